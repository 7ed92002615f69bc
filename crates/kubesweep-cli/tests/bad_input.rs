//! Bad input gets a clear one-line error and a documented exit code, and
//! changes nothing: unreachable cluster, unknown context, missing kubeconfig,
//! malformed profile and plan files. Runs the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn kubesweep(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesweep"));
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent");
    if let Some(path) = kubeconfig {
        cmd.env("KUBECONFIG", path);
    }
    cmd.output().expect("run kubesweep")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A kubeconfig whose server is a closed loopback port.
fn unreachable_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         users:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
         current-context: ctx\n",
    )
    .expect("write kubeconfig");
    path
}

#[test]
fn version_and_help_work() {
    let out = kubesweep(&["--version"], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kubesweep "));
    let out = kubesweep(&["--help"], None);
    assert!(out.status.success());
    for sub in ["plan", "apply", "verify", "profiles"] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(sub),
            "help lists {sub}"
        );
    }
}

#[test]
fn unreachable_cluster_exits_3_naming_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = kubesweep(&["plan"], Some(&unreachable_kubeconfig(dir.path())));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach") && err.contains("127.0.0.1:1"),
        "stderr: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error, got: {err}"
    );
}

#[test]
fn unknown_context_exits_3_listing_the_available_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = kubesweep(
        &["plan", "--context", "nope"],
        Some(&unreachable_kubeconfig(dir.path())),
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("\"nope\"") && err.contains("ctx"),
        "stderr: {err}"
    );
}

#[test]
fn missing_kubeconfig_file_exits_3() {
    let out = kubesweep(&["plan", "--kubeconfig", "/nonexistent/kubeconfig"], None);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/kubeconfig"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn malformed_profile_exits_5_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("broken.yaml");
    std::fs::write(
        &profile,
        "name: broken\ndomains: [kubesphere.io\ncrds: {}\n",
    )
    .expect("write profile");
    let out = kubesweep(
        &[
            "plan",
            "--profile-file",
            profile.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:", profile.display())),
        "names the file: {err}"
    );
    assert!(
        err.contains(":2:") || err.contains(":3:"),
        "names the line: {err}"
    );
}

#[test]
fn unknown_profile_key_exits_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("typo.yaml");
    std::fs::write(
        &profile,
        "name: typo\ndomains: [example.com]\ncrds:\n  groupz: [example.com]\nnamespaces: {}\n",
    )
    .expect("write profile");
    let out = kubesweep(
        &[
            "plan",
            "--profile-file",
            profile.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("groupz"),
        "names the unknown key: {}",
        stderr(&out)
    );
}

#[test]
fn unknown_builtin_profile_is_a_usage_error() {
    let out = kubesweep(&["plan", "--profile", "nosuch"], None);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("kubesphere"),
        "lists the built-ins: {}",
        stderr(&out)
    );
}

#[test]
fn malformed_plan_file_exits_5_before_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, "{\"schema_version\": 1, \"phases\": [").expect("write plan");
    // The kubeconfig points nowhere: a plan error must come first, with its own code.
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let out = kubesweep(
        &["apply", plan.to_str().expect("utf-8 path"), "--yes"],
        Some(&kubeconfig),
    );
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("plan.json"),
        "names the file: {}",
        stderr(&out)
    );
}
