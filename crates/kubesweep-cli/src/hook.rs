//! Hook mode's edges (`apply --hook`, a Helm post-delete hook Job): status
//! lines as JSON log lines on stderr, and the short summary the kubelet
//! shows as the Job's termination message.
//!
//! The summary is collected while `apply` runs (counts, backup, failures,
//! the records left for Helm) and written once, when the process ends,
//! whatever the outcome, with the verdict and the error line first: the
//! kubelet keeps at most 4096 bytes of the file, so what matters most
//! comes first and the text is cut at that limit.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kubelet reads at most this many bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// How many failed actions the summary names.
pub const FAILURES_NAMED: usize = 5;

/// Whether status lines go through `tracing` (JSON) instead of plain stderr.
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Where the summary goes, once hook mode is on.
static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

struct Summary {
    path: PathBuf,
    lines: Vec<String>,
}

/// Status lines become JSON log lines (`--log-format json`, hook mode).
pub fn set_json_lines(on: bool) {
    JSON_LINES.store(on, Ordering::Relaxed);
}

/// Turns hook mode's summary on: it is written to `path` at [`finish`].
pub fn start_summary(path: PathBuf) {
    if let Ok(mut summary) = SUMMARY.lock() {
        *summary = Some(Summary {
            path,
            lines: Vec::new(),
        });
    }
}

/// A status line of `apply` on stderr: plain text, or a JSON log line.
pub fn status_line(message: impl Display) {
    if JSON_LINES.load(Ordering::Relaxed) {
        tracing::info!(target: "kubesweep_cli", "{message}");
    } else {
        stderr_line(message);
    }
}

/// `say!("...", args)`: [`status_line`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::hook::status_line(format!($($arg)*))
    };
}
pub(crate) use say;

/// An error line on stderr, as [`status_line`] does.
pub fn say_error(message: impl Display) {
    if JSON_LINES.load(Ordering::Relaxed) {
        tracing::error!(target: "kubesweep_cli", "{message}");
    } else {
        stderr_line(message);
    }
}

/// One line on stderr, whatever became of the reader: `eprintln!` panics
/// when stderr is closed (a `| tee` killed, a bench's reader gone), and a
/// panic in the signal listener would leave every later signal swallowed.
fn stderr_line(message: impl Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Adds a line to the summary (nothing outside hook mode).
pub fn summarise(line: impl Into<String>) {
    if let Ok(mut summary) = SUMMARY.lock()
        && let Some(summary) = summary.as_mut()
    {
        summary.lines.push(line.into());
    }
}

/// Writes the summary with the verdict first (`exit` and, when the run
/// failed, its error line), cut to the kubelet's limit. A file that cannot
/// be written is reported on stderr and does not change the exit code.
pub fn finish(exit: u8, error: Option<&str>) {
    let Some(summary) = SUMMARY.lock().ok().and_then(|mut s| s.take()) else {
        return;
    };
    let verdict = match (exit, error) {
        (0, _) => "kubesweep hook: success (exit 0)".to_owned(),
        (code, Some(error)) => format!("kubesweep hook: FAILED (exit {code}): {error}"),
        (code, None) => format!("kubesweep hook: FAILED (exit {code})"),
    };
    let text = render(&verdict, &summary.lines);
    if let Err(e) = write(&summary.path, &text) {
        say_error(format!(
            "kubesweep: could not write the termination message {}: {e}",
            summary.path.display()
        ));
    }
}

/// The message: verdict, then the collected lines, at most
/// [`TERMINATION_MESSAGE_LIMIT`] bytes (cut on a character boundary, with a
/// marker when cut).
pub fn render(verdict: &str, lines: &[String]) -> String {
    let mut text = String::from(verdict);
    text.push('\n');
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    if text.len() <= TERMINATION_MESSAGE_LIMIT {
        return text;
    }
    const CUT: &str = "\n[cut at 4096 bytes]\n";
    let mut end = TERMINATION_MESSAGE_LIMIT - CUT.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(CUT);
    text
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_fits_the_kubelets_limit() {
        let lines: Vec<String> = (0..500).map(|i| format!("failed: é object {i}")).collect();
        let text = render("kubesweep hook: FAILED (exit 1)", &lines);
        assert!(text.len() <= TERMINATION_MESSAGE_LIMIT, "{}", text.len());
        assert!(text.starts_with("kubesweep hook: FAILED (exit 1)\n"));
        assert!(text.ends_with("[cut at 4096 bytes]\n"));
        let short = render("kubesweep hook: success (exit 0)", &["a".into()]);
        assert_eq!(short, "kubesweep hook: success (exit 0)\na\n");
    }
}
