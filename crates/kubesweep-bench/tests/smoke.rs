//! The benchmark's smoke run, so the harness cannot rot: every contender
//! but the hook method (kubesweep apply with and without the backup,
//! `kubesweep plan`, the floor client) once on a small footprint, on a
//! control plane of its own restarted with an audit log. It asserts only
//! that each contender finished, left the cluster clean (`kubesweep
//! verify` exit 0 after each) and was counted by the server; no times.

use std::path::{Path, PathBuf};
use std::process::Command;

use kubesweep_bench::report::{BenchReport, Kind};
use kubesweep_fixtures::harness::PrivateControlPlane;

/// The kubesweep binary of this build, next to the bench's (`cargo test
/// --workspace` builds it for the CLI's tests; alone: `cargo build -p
/// kubesweep-cli` first).
fn kubesweep_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_kubesweep-bench")).with_file_name("kubesweep");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p kubesweep-cli --bin kubesweep` first (cargo test --workspace builds it)",
        path.display()
    );
    path
}

#[test]
fn every_contender_but_the_hook_leaves_the_cluster_clean() {
    let kubesweep = kubesweep_binary();
    let plane = PrivateControlPlane::start();
    let dir = tempfile::tempdir().expect("scratch");
    let policy = dir.path().join("audit-policy.yaml");
    let audit_log = dir.path().join("audit.log");
    std::fs::write(&policy, kubesweep_bench::audit::POLICY).expect("write the audit policy");
    plane.restart_component(
        "kube-apiserver",
        &[
            &format!("--audit-policy-file={}", policy.display()),
            &format!("--audit-log-path={}", audit_log.display()),
        ],
    );
    let json = dir.path().join("results.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kubesweep-bench"))
        .args(["run", "--scale", "small", "--runs", "1", "--settle", "0"])
        .args([
            "--contenders",
            "apply,no-backup,plan,floor",
            "--floor-concurrency",
            "32",
        ])
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .arg("--kubesweep")
        .arg(&kubesweep)
        .arg("--audit-log")
        .arg(&audit_log)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run kubesweep-bench");
    assert!(
        out.status.success(),
        "kubesweep-bench run failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: BenchReport =
        serde_json::from_slice(&std::fs::read(&json).expect("results written"))
            .expect("results are a report");
    let [scale] = report.scales.as_slice() else {
        panic!("one scale: {report:?}");
    };
    let kinds: Vec<Kind> = scale.contenders.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [Kind::Kubesweep, Kind::Kubesweep, Kind::Plan, Kind::Floor],
        "{report:?}"
    );
    for c in &scale.contenders {
        let [sample] = c.samples.as_slice() else {
            panic!("{}: one sample: {:?}", c.name, c.samples);
        };
        assert!(sample.verified, "{} left the cluster unclean", c.name);
        let requests = sample
            .requests
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no request counts", c.name));
        assert!(
            requests.total() > 0,
            "{}: the server counted nothing",
            c.name
        );
        assert!(sample.max_rss_kib > 0, "{}: no peak RSS", c.name);
    }
}
