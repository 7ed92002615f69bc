//! Runs one child process and measures it: wall time and peak resident set
//! size. The peak comes from the kernel's own accounting of the finished
//! child (`wait4`'s `ru_maxrss`), read through GNU time (`/usr/bin/time -f
//! %M`): the workspace forbids `unsafe`, and sampling `/proc` would miss a
//! short child's peak. I/O at the edge.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// GNU time, which reports the child's `ru_maxrss` after `wait4`.
pub const GNU_TIME: &str = "/usr/bin/time";

/// What one measured child did.
#[derive(Debug)]
pub struct Measured {
    /// Its exit status, stdout and stderr (GNU time's own line is not in stderr:
    /// it writes to a file of its own).
    pub output: Output,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

/// Fails with one line when GNU time is missing, before any run starts.
pub fn check_gnu_time() -> anyhow::Result<()> {
    if !Path::new(GNU_TIME).exists() {
        bail!(
            "{GNU_TIME} (GNU time) is needed to read each contender's peak RSS; install the `time` package"
        );
    }
    Ok(())
}

/// Runs `program args` to completion under GNU time, in `dir`, with stdout
/// and stderr captured (stdout dropped when `keep_stdout` is false).
pub fn run(
    program: &Path,
    args: &[String],
    dir: &Path,
    keep_stdout: bool,
) -> anyhow::Result<Measured> {
    let rss_file = scratch_file(dir);
    let mut command = Command::new(GNU_TIME);
    command
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("run {} under {GNU_TIME}", program.display()))?;
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&rss_file)
        .with_context(|| format!("read {}", rss_file.display()))?;
    let _ = std::fs::remove_file(&rss_file);
    Ok(Measured {
        output,
        elapsed,
        max_rss_kib: parse_max_rss(&text)
            .with_context(|| format!("{GNU_TIME} wrote {text:?}, not a size"))?,
    })
}

/// GNU time's `%M` output: the number on the last non-empty line (a line
/// `Command exited with non-zero status N` may come first).
pub fn parse_max_rss(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .parse()
        .ok()
}

fn scratch_file(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".rss-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_after_an_exit_status_line() {
        assert_eq!(parse_max_rss("10240\n"), Some(10240));
        assert_eq!(
            parse_max_rss("Command exited with non-zero status 1\n5120\n"),
            Some(5120)
        );
        assert_eq!(parse_max_rss(""), None);
    }
}
