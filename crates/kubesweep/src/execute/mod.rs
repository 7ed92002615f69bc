//! Execution: runs a [`crate::plan::Plan`] against the cluster. `run` drives
//! phases, concurrency and waits; `ops` holds the UID-bound mutations (`helm_record` the rewrite of a
//! kept Helm release record);
//! `checks` which requests a wait round sends;
//! `report` the outcomes and the progress trait; `cancel` the token that
//! stops a run between actions.

mod cancel;
mod checks;
mod helm_record;
mod ops;
mod report;
mod run;
mod stuck;

pub use cancel::Cancel;
pub use ops::{FIELD_MANAGER, Removal, finalize_blocker, removal_patch};
pub use report::{
    ActionReport, ExecutionReport, NoProgress, Outcome, OutcomeCounts, PhaseReport, Progress,
    Remaining, Stopped, WaitReport,
};
pub use run::{ExecuteError, ExecuteOptions, INTERRUPTED, execute, run_single, wait_for_deletion};
pub use stuck::describe_content;
