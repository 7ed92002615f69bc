//! A `kubesweep` run as a child process, for tests that act on the cluster
//! while it runs (signals, faults): its stderr read line by line, its first
//! write awaited through the audit record, and the backup directory it
//! leaves checked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `kubesweep` with its stderr collected by a thread.
pub struct Running {
    pub child: Child,
    stderr: std::thread::JoinHandle<String>,
    /// Each stderr line as it is written.
    lines: std::sync::mpsc::Receiver<String>,
}

/// Starts `kubesweep args` in `dir` (its backups and audit record land in
/// `dir/kubesweep-backups`).
pub fn start(args: &[&str], kubeconfig: &Path, dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesweep"))
        .current_dir(dir)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubesweep");
    let pipe = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    Running {
        child,
        stderr,
        lines,
    }
}

impl Running {
    /// Waits for the end; the collected stderr goes into the output.
    pub fn finish(mut self) -> Output {
        let stdout = {
            let mut s = Vec::new();
            if let Some(mut out) = self.child.stdout.take() {
                let _ = std::io::Read::read_to_end(&mut out, &mut s);
            }
            s
        };
        let status = self.child.wait().expect("wait");
        let stderr = self.stderr.join().expect("stderr thread").into_bytes();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits for a stderr line starting with `prefix`.
    pub fn wait_for_line(&self, prefix: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(180)) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("no stderr line starting with {prefix:?}: {e}"),
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }
}

pub fn backup_dir(dir: &Path) -> PathBuf {
    dir.join("kubesweep-backups")
}

/// The audit record in `dir`, once it exists.
pub fn audit_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(backup_dir(dir))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
}

/// Waits until the run has recorded its first write: from then on it is
/// changing the cluster.
pub fn wait_for_first_write(run: &mut Running, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(path) = audit_file(dir)
            && std::fs::read_to_string(&path).is_ok_and(|t| t.lines().next().is_some())
        {
            return;
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("kubesweep ended ({status}) before its first write");
        }
        assert!(Instant::now() < deadline, "no audit line within 3 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The backup directory holds complete archives and audit records only, and
/// every audit line is JSON.
pub fn assert_backup_dir_clean(dir: &Path) {
    for entry in std::fs::read_dir(backup_dir(dir)).expect("backup dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            (name.starts_with("kubesweep-backup-") && name.ends_with(".tar.gz"))
                || (name.starts_with("kubesweep-audit-") && name.ends_with(".jsonl")),
            "unexpected file in the backup directory: {name}"
        );
        if name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).expect("audit");
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
            }
        }
    }
}

/// The backup directory is clean (see [`assert_backup_dir_clean`]), holds
/// at least one archive, and every archive verifies (`kubesweep backup
/// inspect`: every checksum).
pub fn assert_backup_intact(dir: &Path) {
    assert_backup_dir_clean(dir);
    let archives: Vec<PathBuf> = std::fs::read_dir(backup_dir(dir))
        .expect("backup dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert!(
        !archives.is_empty(),
        "no backup archive in {}",
        dir.display()
    );
    for archive in archives {
        let out = Command::new(env!("CARGO_BIN_EXE_kubesweep"))
            .args(["backup", "inspect"])
            .arg(&archive)
            .output()
            .expect("run kubesweep backup inspect");
        assert_eq!(
            out.status.code(),
            Some(0),
            "backup {} does not verify: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
