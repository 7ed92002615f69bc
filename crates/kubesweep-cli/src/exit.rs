//! Exit codes and the two error tiers of the command line: expected failures
//! (bad input, cluster state, refusals) with their own codes and one-line
//! messages, and internal errors (bugs).

use std::fmt;
use std::process::ExitCode;

/// Documented exit codes (README "Exit codes"). Stable: scripts depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `verify`, nothing is left.
    Ok = 0,
    /// The platform's footprint is (still) present: `verify` found leftovers,
    /// or `apply` finished with objects left or actions that failed.
    Leftovers = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// Kubeconfig, context or cluster unreachable.
    Cluster = 3,
    /// The credentials lack permissions the plan needs; nothing was changed.
    Forbidden = 4,
    /// A malformed input file: profile, plan or backup.
    BadInput = 5,
    /// The plan does not fit this cluster: made for another cluster, or stale.
    StalePlan = 6,
    /// Refused without a change: confirmation missing, blast radius exceeded,
    /// or platform controllers still running.
    Refused = 7,
    /// Backup could not be written or verified; nothing was changed.
    Backup = 8,
    /// A bug in kubesweep.
    Internal = 70,
    /// Interrupted by SIGINT or SIGTERM (the shell's 128 + 2); a re-run
    /// finishes the job.
    Interrupted = 130,
}

/// An error that ends the command with a given exit code.
#[derive(Debug)]
pub struct CliError {
    /// Which exit code the error maps to.
    pub exit: Exit,
    /// One-line message, read after "kubesweep: ".
    pub message: String,
}

impl CliError {
    /// An error with the given exit code and message.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
