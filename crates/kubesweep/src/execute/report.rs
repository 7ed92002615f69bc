//! What execution reports: one outcome per action, per-phase waits, counts and
//! durations (serialisable for `-o json` and the hook mode's durable report),
//! and the [`Progress`] trait through which a front end draws progress.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::ClusterIdentity;
use crate::plan::PhaseId;
use crate::resource::ObjectRef;

/// What happened to one action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The change was made.
    Done {
        /// Extra detail, e.g. "nothing left to remove".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The target no longer existed: the goal already holds.
    AlreadyGone,
    /// The name now belongs to another object (different UID, re-created
    /// since planning); it was not touched.
    SkippedStale {
        /// The UID found instead of the planned one.
        found_uid: String,
    },
    /// Deliberately not done (protected namespace, last-resort conditions not met...).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The change failed.
    Failed {
        /// The error.
        message: String,
    },
}

impl Outcome {
    /// Whether this outcome is a failure.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// Short name (`done`, `already-gone`...).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::AlreadyGone => "already-gone",
            Outcome::SkippedStale { .. } => "skipped-stale",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One action's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    /// The target as planned.
    pub target: ObjectRef,
    /// The operation's verb (see [`crate::plan::Operation::verb`]).
    pub operation: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time of the action, in milliseconds.
    pub duration_ms: u64,
}

/// The bounded wait after a phase whose deletions the next phase needs done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReport {
    /// How long the wait took, in milliseconds.
    pub waited_ms: u64,
    /// Whether the wait budget ran out with objects still present.
    pub timed_out: bool,
    /// Objects still present when the wait ended, with why they stay.
    pub remaining: Vec<Remaining>,
}

/// An object that is still there, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    /// The object.
    pub target: ObjectRef,
    /// Reasons (finalizers, deletionTimestamp, conditions).
    pub reasons: Vec<String>,
}

/// One phase's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Which phase.
    pub id: PhaseId,
    /// Per-action results, in plan order.
    pub actions: Vec<ActionReport>,
    /// The wait, for phases that wait for their deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitReport>,
    /// Which way each deleted platform namespace went (the namespaces
    /// phase only): kubesweep's fast path, or the namespace controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_paths: Vec<NamespacePath>,
    /// Wall time of the phase including the wait, in milliseconds.
    pub duration_ms: u64,
}

/// Who emptied and finalized a deleted platform namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamespaceWay {
    /// kubesweep deleted its content, proved it empty and finalized it.
    Fast,
    /// Left to the namespace controller, as without the fast path.
    Controller,
}

/// The way one namespace went, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePath {
    /// The namespace.
    pub namespace: String,
    /// Its UID, as planned.
    pub uid: String,
    /// Fast path or controller.
    pub way: NamespaceWay,
    /// Objects kubesweep deleted in it (with UID preconditions).
    pub deleted: usize,
    /// Why it was left to the controller, or how the fast path ended.
    pub detail: String,
}

/// Counts of outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Actions run.
    pub total: usize,
    /// [`Outcome::Done`].
    pub done: usize,
    /// [`Outcome::AlreadyGone`].
    pub already_gone: usize,
    /// [`Outcome::SkippedStale`].
    pub skipped_stale: usize,
    /// [`Outcome::Skipped`].
    pub skipped: usize,
    /// [`Outcome::Failed`].
    pub failed: usize,
}

impl OutcomeCounts {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: &Outcome) {
        self.total += 1;
        match outcome {
            Outcome::Done { .. } => self.done += 1,
            Outcome::AlreadyGone => self.already_gone += 1,
            Outcome::SkippedStale { .. } => self.skipped_stale += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Failed { .. } => self.failed += 1,
        }
    }
}

/// Why execution ended before the last phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// The last phase that ran.
    pub after: PhaseId,
    /// Why the following phases did not run.
    pub reason: String,
}

/// The result of running a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// The cluster the plan ran on.
    pub cluster: ClusterIdentity,
    /// Digest of the plan that ran ([`crate::plan::Plan::digest`]).
    pub plan_digest: String,
    /// Phases that ran, in order.
    pub phases: Vec<PhaseReport>,
    /// Set when execution stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// The request the authorizer refused (`VERB OBJECT: message`), when a
    /// permission was taken away during the run; execution stopped there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_denied: Option<String>,
    /// Counts over all phases.
    pub counts: OutcomeCounts,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
}

impl ExecutionReport {
    /// No failure, no early stop and no wait that timed out.
    pub fn is_success(&self) -> bool {
        self.counts.failed == 0
            && self.stopped.is_none()
            && self
                .phases
                .iter()
                .all(|p| p.wait.as_ref().is_none_or(|w| !w.timed_out))
    }

    /// Every failed action.
    pub fn failures(&self) -> impl Iterator<Item = &ActionReport> {
        self.phases
            .iter()
            .flat_map(|p| &p.actions)
            .filter(|a| a.outcome.is_failure())
    }
}

/// Receives progress events; every method has an empty default, so a front
/// end implements only what it draws. Called from concurrent tasks.
pub trait Progress: Send + Sync {
    /// A phase starts with `actions` actions.
    fn phase_started(&self, _phase: PhaseId, _actions: usize) {}
    /// One action finished.
    fn action_finished(&self, _phase: PhaseId, _report: &ActionReport) {}
    /// The phase waits; `remaining` deletions are still pending.
    fn waiting(&self, _phase: PhaseId, _remaining: usize, _elapsed: Duration) {}
    /// A phase finished.
    fn phase_finished(&self, _report: &PhaseReport) {}
    /// A write of the namespace fast path (not a planned action): the
    /// deletion of an object inside a terminating platform namespace.
    fn fast_path_write(&self, _report: &ActionReport) {}
    /// The way a deleted platform namespace went.
    fn namespace_path(&self, _path: &NamespacePath) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
