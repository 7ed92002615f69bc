//! Execution: runs a [`crate::plan::Plan`] against the cluster. `run` drives
//! phases, concurrency and waits; `fast_ns` empties and finalizes deleted
//! platform namespaces without waiting for the namespace controller; `ops` holds the UID-bound mutations (`helm_record` the rewrite of a
//! kept Helm release record);
//! `checks` which requests a wait round sends;
//! `report` the outcomes and the progress trait; `cancel` the token that
//! stops a run between actions.

mod cancel;
mod checks;
mod fast_ns;
mod helm_record;
mod ops;
mod report;
mod run;
mod stuck;

pub use cancel::Cancel;
pub use ops::{FIELD_MANAGER, Removal, finalize_blocker, removal_patch};
pub use report::{
    ActionReport, ExecutionReport, NamespacePath, NamespaceWay, NoProgress, Outcome, OutcomeCounts,
    PhaseReport, Progress, Remaining, Stopped, WaitReport,
};
pub use run::{ExecuteError, ExecuteOptions, INTERRUPTED, execute, run_single, wait_for_deletion};
pub use stuck::describe_content;
