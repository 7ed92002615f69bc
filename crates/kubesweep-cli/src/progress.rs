//! Progress of `apply`: one indicatif bar per phase on a terminal, plain log
//! lines (through `tracing`, so `--log-format json` applies) elsewhere; and
//! the log writer that keeps log lines from tearing the bars apart.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kubesweep::execute::{ActionReport, NamespacePath, PhaseReport, Progress};
use kubesweep::plan::PhaseId;

/// The bars of this process, once any are drawn.
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// Where log lines go: straight to stderr, or, while bars are drawn, above
/// them (the bars are cleared, the line printed, the bars redrawn), so a log
/// line never leaves a stale copy of the bars in the scrollback.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match MULTI.get() {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Bars on a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<PhaseId, ProgressBar>>,
}

impl Bars {
    /// Bars drawn on stderr.
    pub fn new() -> Self {
        Self {
            multi: MULTI
                .get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
                .clone(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, phase: PhaseId) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(&phase).cloned()
    }
}

impl Progress for Bars {
    fn phase_started(&self, phase: PhaseId, actions: usize) {
        let bar = self.multi.add(ProgressBar::new(actions as u64));
        let style = ProgressStyle::with_template("{prefix:<34} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.title());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(phase, bar);
        }
    }

    fn action_finished(&self, phase: PhaseId, report: &ActionReport) {
        if let Some(bar) = self.bar(phase) {
            bar.inc(1);
            if report.outcome.is_failure() {
                bar.set_message(format!("failed: {}", report.target));
            }
        }
    }

    fn waiting(&self, phase: PhaseId, remaining: usize, elapsed: Duration) {
        if let Some(bar) = self.bar(phase) {
            bar.set_message(format!(
                "waiting for {remaining} deletion(s), {}s",
                elapsed.as_secs()
            ));
        }
    }

    fn phase_finished(&self, report: &PhaseReport) {
        if let Some(bar) = self.bar(report.id) {
            let failed = report
                .actions
                .iter()
                .filter(|a| a.outcome.is_failure())
                .count();
            let message = match (failed, &report.wait) {
                (0, Some(wait)) if wait.timed_out => {
                    format!("{} still present", wait.remaining.len())
                }
                (0, _) => format!("done in {:.1}s", report.duration_ms as f64 / 1000.0),
                (n, _) => format!("{n} failed"),
            };
            bar.finish_with_message(message);
        }
    }
}

/// Log lines, for pipes, CI and `--log-format json`.
pub struct Lines;

impl Progress for Lines {
    // Phase starts are logged by the library itself.
    fn action_finished(&self, phase: PhaseId, report: &ActionReport) {
        if report.outcome.is_failure() {
            tracing::warn!(phase = phase.title(), target = %report.target, outcome = ?report.outcome, "action failed");
        } else {
            tracing::debug!(phase = phase.title(), target = %report.target, outcome = report.outcome.name(), "action finished");
        }
    }

    fn waiting(&self, phase: PhaseId, remaining: usize, elapsed: Duration) {
        tracing::info!(
            phase = phase.title(),
            remaining,
            elapsed_s = elapsed.as_secs(),
            "waiting for deletions"
        );
    }

    fn phase_finished(&self, report: &PhaseReport) {
        let failed = report
            .actions
            .iter()
            .filter(|a| a.outcome.is_failure())
            .count();
        tracing::info!(
            phase = report.id.title(),
            actions = report.actions.len(),
            failed,
            duration_ms = report.duration_ms,
            "phase finished"
        );
    }

    fn namespace_path(&self, path: &NamespacePath) {
        tracing::info!(
            namespace = path.namespace,
            way = ?path.way,
            deleted = path.deleted,
            detail = path.detail,
            "namespace path"
        );
    }
}
