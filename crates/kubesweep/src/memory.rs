//! The process's memory at a stage of a run, logged at debug level: the
//! resident set now and its peak so far, read from `/proc/self/status`
//! (Linux; elsewhere nothing is logged). A large cluster's run is bounded by
//! memory as much as by time, and this tells which stage holds it.

/// Logs the resident set and its peak after `stage`.
pub fn log_stage(stage: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    if let Some((rss_kib, peak_kib)) = read() {
        tracing::debug!(stage, rss_kib, peak_kib, "memory");
    }
}

/// `(VmRSS, VmHWM)` in KiB.
fn read() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((field(&status, "VmRSS:")?, field(&status, "VmHWM:")?))
}

fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kib_of_a_status_line() {
        let status = "Name:\tkubesweep\nVmHWM:\t  170468 kB\nVmRSS:\t   98304 kB\n";
        assert_eq!(field(status, "VmHWM:"), Some(170_468));
        assert_eq!(field(status, "VmRSS:"), Some(98_304));
        assert_eq!(field(status, "VmSwap:"), None);
    }
}
