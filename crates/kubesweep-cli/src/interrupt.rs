//! SIGINT and SIGTERM during `apply` (and `backup`). What a signal does depends on how far
//! the run got: before anything is written it ends the process at once
//! (nothing to protect); from the backup on, the first signal asks the run
//! to stop cooperatively (the backup is finished or dropped whole, no new
//! action starts, controllers are scaled back, the audit record is synced),
//! and a second one aborts at once, removing this process's temporary backup
//! file and printing what the operator must undo by hand. Exit code 130
//! either way, the shell's convention for an interrupt.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kubesweep::execute::Cancel;

use crate::exit::{CliError, Exit};

/// How far the run got, which decides what a signal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading and asking only: exiting leaves nothing behind.
    ReadOnly,
    /// Writing the backup, then changing the cluster: stop cooperatively.
    Writing,
}

/// What to do on the `count`-th signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Ask the run to stop after the requests in flight.
    Stop,
    /// End the process now.
    Abort,
}

/// The reaction to signal number `count` (1-based) in `stage`.
pub fn reaction(count: u32, stage: Stage) -> Reaction {
    match stage {
        Stage::ReadOnly => Reaction::Abort,
        Stage::Writing if count <= 1 => Reaction::Stop,
        Stage::Writing => Reaction::Abort,
    }
}

#[derive(Debug)]
struct State {
    stage: Stage,
    backup_dir: Option<PathBuf>,
    /// Commands the operator must run if the process ends before it could
    /// undo its own temporary changes (controllers scaled to zero).
    undo_hints: Vec<String>,
}

/// The signal handler's shared state; clones share it.
#[derive(Clone, Debug)]
pub struct Interrupt {
    cancel: Cancel,
    state: Arc<Mutex<State>>,
}

impl Interrupt {
    /// Installs the handlers (inside the runtime). Without them (a platform
    /// without Unix signals, or installation failed) signals keep their
    /// default action, which is what the tool did before.
    pub fn install() -> Self {
        let me = Self {
            cancel: Cancel::new(),
            state: Arc::new(Mutex::new(State {
                stage: Stage::ReadOnly,
                backup_dir: None,
                undo_hints: Vec::new(),
            })),
        };
        me.listen();
        me
    }

    /// The token the executor watches.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Whether a signal asked the run to stop.
    pub fn is_interrupted(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once a signal asked the run to stop.
    pub async fn interrupted(&self) {
        self.cancel.cancelled().await;
    }

    /// The backup into `dir` starts: from now on signals stop cooperatively.
    pub fn writing(&self, backup_dir: &Path) {
        let mut state = self.lock();
        state.stage = Stage::Writing;
        state.backup_dir = Some(backup_dir.to_path_buf());
    }

    /// Runs a read-only or all-or-nothing step before the first change,
    /// unless a signal comes first: then the step is dropped (a backup's
    /// temporary file with it) and the run ends with nothing changed.
    pub async fn before_changes<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, CliError>>,
    ) -> Result<T, CliError> {
        let interrupted = || {
            CliError::new(
                Exit::Interrupted,
                "interrupted before any change; nothing was changed",
            )
        };
        let value = tokio::select! {
            biased;
            result = step => result?,
            () = self.interrupted() => return Err(interrupted()),
        };
        if self.is_interrupted() {
            return Err(interrupted());
        }
        Ok(value)
    }

    /// Commands to print if the process is aborted (empty: none).
    pub fn set_undo_hints(&self, hints: Vec<String>) {
        self.lock().undo_hints = hints;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers for the signals now (so none arriving after `install`
    /// returns gets its default action) and reacts to them in a task.
    #[cfg(unix)]
    fn listen(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(int), Ok(term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("signal handlers could not be installed; Ctrl-C ends the run at once");
            return;
        };
        let handler = self.clone();
        tokio::spawn(async move { handler.react(int, term).await });
    }

    #[cfg(unix)]
    async fn react(
        self,
        mut int: tokio::signal::unix::Signal,
        mut term: tokio::signal::unix::Signal,
    ) {
        let mut count = 0u32;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            count += 1;
            let stage = self.lock().stage;
            match reaction(count, stage) {
                Reaction::Stop => {
                    self.cancel.cancel();
                    // From a thread of its own: a stderr nobody reads (a full
                    // pipe) must not keep the listener from the next signal.
                    std::thread::spawn(|| {
                        crate::hook::say_error(
                            "kubesweep: interrupted: finishing the requests in flight, starting nothing new \
                             (interrupt again to abort at once)",
                        )
                    });
                }
                Reaction::Abort => self.abort(stage),
            }
        }
    }

    #[cfg(not(unix))]
    fn listen(&self) {}

    /// Ends the process now: removes this process's temporary backup file
    /// (destructors do not run on exit) and says what is left to undo.
    fn abort(&self, stage: Stage) -> ! {
        let state = self.lock();
        if let Some(dir) = &state.backup_dir {
            for file in own_temp_files(dir) {
                let _ = std::fs::remove_file(&file);
            }
        }
        // Hook mode's termination message gets the same lines: exit()
        // skips the one `main` writes.
        let mut lines = Vec::new();
        if stage == Stage::ReadOnly {
            lines.push("interrupted; nothing was changed".to_owned());
        } else {
            lines.push(
                "aborted; requests in flight may or may not have been applied. \
                 Run `kubesweep apply` again to finish (it starts from what is left)"
                    .to_owned(),
            );
            for hint in &state.undo_hints {
                lines.push(format!("to undo --stop-controllers, run: {hint}"));
            }
        }
        crate::hook::finish(Exit::Interrupted as u8, Some(&lines.join("; ")));
        // The lines go to stderr last, and the process ends even if nobody
        // reads it (a full pipe blocks the write): an abort must abort.
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(Exit::Interrupted as i32);
        });
        for line in &lines {
            crate::hook::say_error(format!("kubesweep: {line}"));
        }
        std::process::exit(Exit::Interrupted as i32);
    }
}

/// This process's temporary backup files in `dir`.
fn own_temp_files(dir: &Path) -> Vec<PathBuf> {
    let prefix = kubesweep::backup::temp_prefix();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| is_own_temp(n, &prefix))
        })
        .collect()
}

fn is_own_temp(name: &str, prefix: &str) -> bool {
    name.starts_with(prefix) && name.ends_with(kubesweep::backup::TEMP_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_writing_any_signal_aborts_after_it_the_second_does() {
        assert_eq!(reaction(1, Stage::ReadOnly), Reaction::Abort);
        assert_eq!(reaction(1, Stage::Writing), Reaction::Stop);
        assert_eq!(reaction(2, Stage::Writing), Reaction::Abort);
        assert_eq!(reaction(3, Stage::Writing), Reaction::Abort);
    }

    #[test]
    fn only_this_process_temporary_backups_are_removed() {
        let prefix = kubesweep::backup::temp_prefix();
        assert!(is_own_temp(&format!("{prefix}abc.partial"), &prefix));
        assert!(!is_own_temp(".kubesweep-backup-1-abc.partial", &prefix));
        assert!(!is_own_temp(&format!("{prefix}abc.tar.gz"), &prefix));
        let dir = tempfile::tempdir().expect("dir");
        let own = dir.path().join(format!("{prefix}x.partial"));
        let other = dir.path().join(".kubesweep-backup-1-x.partial");
        std::fs::write(&own, b"x").expect("write");
        std::fs::write(&other, b"x").expect("write");
        assert_eq!(own_temp_files(dir.path()), vec![own]);
    }
}
