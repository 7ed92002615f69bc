//! Bad input gets a clear one-line error and a documented exit code, and
//! changes nothing: unreachable, silent or non-Kubernetes servers, malformed
//! kubeconfigs, unknown contexts, rejected credentials, malformed or
//! over-reaching profiles, malformed, truncated or edited plans, conflicting
//! flags, and a backup read with the wrong key. Runs the real binary; only
//! the rejected-credentials test talks to the test cluster.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The one line of an error, asserted to be the whole of stderr.
fn one_line(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error, got: {err}"
    );
    err.trim_end().to_owned()
}

/// A kubeconfig with one context `ctx` on `server`, authenticated by `token`.
fn kubeconfig_for(dir: &Path, server: &str, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
             current-context: ctx\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

/// Runs `kubesweep apply --yes` (the command with the most power), timed.
fn apply_timed(kubeconfig: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = kubesweep(&["apply", "--yes", "--no-backup"], Some(kubeconfig));
    (out, started.elapsed())
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with
/// `response` and records each request line, so a test can assert that
/// nothing but reads reached it.
fn fake_server(response: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(stream, response, &seen);
        }
    });
    (port, requests)
}

/// Reads one request head, records its request line (before answering, so
/// the client cannot exit before it is recorded) and writes the response.
fn answer(stream: TcpStream, response: &str, seen: &Mutex<Vec<String>>) -> Option<()> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut header = String::new();
    while reader.read_line(&mut header).ok()? > 2 {
        header.clear();
    }
    seen.lock()
        .expect("lock")
        .push(request_line.trim_end().to_owned());
    let mut stream = stream;
    stream.write_all(response.as_bytes()).ok()
}

const HTML_200: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 38\r\nConnection: close\r\n\r\n<html><body>Welcome to nginx</body></html>";
const PLAIN_404: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found";

#[test]
fn a_server_that_answers_but_is_not_kubernetes_exits_3_at_once() {
    for (what, response) in [("HTML 200", HTML_200), ("plain 404", PLAIN_404)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, requests) = fake_server(response);
        let kubeconfig = kubeconfig_for(dir.path(), &format!("http://127.0.0.1:{port}"), "t");
        let (out, took) = apply_timed(&kubeconfig);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        let err = one_line(&out);
        assert!(
            err.contains(&format!("127.0.0.1:{port}"))
                && err.contains("not a Kubernetes API server"),
            "{what}: {err}"
        );
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
        let requests = requests.lock().expect("lock");
        assert!(!requests.is_empty(), "{what}: the server was asked");
        assert!(
            requests.iter().all(|r| r.starts_with("GET ")),
            "{what}: only reads: {requests:?}"
        );
    }
}

#[test]
fn an_unreachable_server_exits_3_within_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that was just free: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{port}"), "t");
    let (out, took) = apply_timed(&kubeconfig);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(one_line(&out).contains("cannot reach"));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("refused connection reported in {took:?}");
}

#[test]
fn a_server_that_accepts_but_never_answers_exits_3_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold every connection open, saying nothing (no TLS).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{port}"), "t");
    let (out, took) = apply_timed(&kubeconfig);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = one_line(&out);
    assert!(
        err.contains(&format!(
            "no answer from the API server at https://127.0.0.1:{port}"
        )),
        "{err}"
    );
    // The connect timeout (10 s) plus 2 s for retries bound the first contact.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("silent server reported in {took:?}: {err}");
}

#[test]
fn a_malformed_kubeconfig_exits_3_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, text) in [
        ("not YAML", "apiVersion: v1\nclusters: [\n"),
        (
            "wrong shape",
            "apiVersion: v1\nkind: Config\nclusters: 42\n",
        ),
        ("binary", "\u{0}\u{1}\u{2}\u{7f}"),
    ] {
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, text).expect("write");
        let out = kubesweep(&["plan"], Some(&path));
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
        let err = one_line(&out);
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
    }
}

#[test]
fn rejected_credentials_exit_3_and_change_nothing() {
    use kube::config::{AuthInfo, Kubeconfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Kubeconfig::read_from(kubesweep_fixtures::harness::kubeconfig_path())
        .expect("test cluster kubeconfig");
    for named in &mut config.auth_infos {
        named.auth_info = Some(AuthInfo {
            token: Some("expired-or-invalid-token".to_owned().into()),
            ..AuthInfo::default()
        });
    }
    // JSON is YAML: kubesweep reads it as a kubeconfig.
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write");
    let (out, took) = apply_timed(&path);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = one_line(&out);
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Nothing to compare: with no valid credential there is no request the
    // server accepts. What the test proves is that apply stops at the first
    // request with exit 3 and says why.
}

/// Writes `text` as a profile file and runs `plan` with it (no cluster: a
/// profile is checked before connecting).
fn plan_with_profile(dir: &Path, text: &str) -> Output {
    let profile = dir.join("profile.yaml");
    std::fs::write(&profile, text).expect("write profile");
    let kubeconfig = unreachable_kubeconfig(dir);
    kubesweep(
        &["plan", "--profile-file", profile.to_str().expect("utf-8")],
        Some(&kubeconfig),
    )
}

#[test]
fn a_profile_claiming_a_protected_namespace_or_every_crd_exits_5() {
    let base = "name: demo\ndomains: [example.io]\n";
    for (text, says) in [
        (
            format!("{base}crds: {{}}\nnamespaces: {{delete: [kube-system]}}\n"),
            "namespaces.delete[0]: a protected namespace is never deleted",
        ),
        (
            format!("{base}crds: {{groups: ['']}}\nnamespaces: {{}}\n"),
            "crds.groups[0]: must not be empty",
        ),
        (
            format!("{base}crds: {{groups: [io]}}\nnamespaces: {{}}\n"),
            "crds.groups[0]: `io` is a top-level domain",
        ),
        (
            format!("{base}crds: {{groups: [k8s.io]}}\nnamespaces: {{}}\n"),
            "crds.groups[0]: `k8s.io` is Kubernetes' own",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = plan_with_profile(dir.path(), &text);
        assert_eq!(out.status.code(), Some(5), "{text}: {}", stderr(&out));
        let err = one_line(&out);
        assert!(
            err.contains("profile.yaml") && err.contains(says),
            "{text}: {err}"
        );
    }
}

#[test]
fn an_oversized_profile_exits_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("name: big\n# {}\n", "x".repeat(10 * 1024 * 1024));
    let out = plan_with_profile(dir.path(), &text);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    assert!(one_line(&out).contains("larger than"));
}

/// A valid plan file (with its digest) for an empty cluster, made by the
/// library as `kubesweep plan -o FILE` makes it.
fn plan_file() -> serde_json::Value {
    let profile = kubesweep::profile::Profile::builtin("kubesphere").expect("profile");
    let plan = kubesweep::plan::plan(
        &profile,
        &kubesweep::inventory::Inventory::default(),
        &kubesweep::plan::PlanOptions::default(),
    );
    serde_json::from_str(&kubesweep::plan::to_plan_file(&plan).expect("serialise")).expect("json")
}

#[test]
fn a_truncated_edited_unsigned_or_future_plan_exits_5_before_connecting() {
    let valid = plan_file();
    let text = serde_json::to_string_pretty(&valid).expect("json");
    let mut edited = valid.clone();
    edited["profile"] = "other".into();
    let mut unsigned = valid.clone();
    unsigned.as_object_mut().expect("object").remove("digest");
    let mut future = valid.clone();
    future["schema_version"] = 99.into();
    // Saved by a kubesweep before custom resources could go with their CRD.
    let mut older = valid.clone();
    older["schema_version"] = 1.into();
    let cases = [
        (
            "truncated",
            text[..text.len() / 2].to_owned(),
            "invalid plan",
        ),
        (
            "edited",
            edited.to_string(),
            "was changed after it was made",
        ),
        ("unsigned", unsigned.to_string(), "has no digest"),
        ("future schema", future.to_string(), "schema version 99"),
        (
            "older schema",
            older.to_string(),
            "has schema version 1, this kubesweep reads version 2: make a new plan",
        ),
        ("empty", String::new(), "invalid plan"),
        ("not JSON", "\u{0}\u{ff}garbage".to_owned(), "invalid plan"),
    ];
    for (what, content, says) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = dir.path().join("plan.json");
        std::fs::write(&plan, content).expect("write plan");
        // Nowhere to connect: the plan is refused first, with its own code.
        let kubeconfig = unreachable_kubeconfig(dir.path());
        let out = kubesweep(
            &["apply", plan.to_str().expect("utf-8"), "--yes"],
            Some(&kubeconfig),
        );
        assert_eq!(out.status.code(), Some(5), "{what}: {}", stderr(&out));
        let err = one_line(&out);
        assert!(
            err.contains("plan.json") && err.contains(says),
            "{what}: {err}"
        );
    }
}

#[test]
fn conflicting_flags_exit_2_before_anything_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = unreachable_kubeconfig(dir.path());
    for args in [
        vec![
            "plan",
            "--profile",
            "kubesphere",
            "--profile-file",
            "p.yaml",
        ],
        vec!["apply", "--yes", "--no-backup", "--backup-dir", "d"],
        vec!["apply", "--yes", "--no-backup", "--encrypt-to", "age1x"],
    ] {
        let out = kubesweep(&args, Some(&kubeconfig));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains("cannot be used with"), "{args:?}: {err}");
    }
}

#[test]
fn a_backup_read_with_the_wrong_key_exits_5_and_restores_nothing() {
    use age::secrecy::ExposeSecret;
    let dir = tempfile::tempdir().expect("tempdir");
    let right = age::x25519::Identity::generate();
    let wrong = age::x25519::Identity::generate();
    let plain = kubesweep::backup::encode(&[], &kubesweep::backup::MetadataInput::default())
        .expect("encode");
    let recipients: Vec<Box<dyn age::Recipient + Send>> = vec![Box::new(right.to_public())];
    let sealed = kubesweep::backup::encrypt(&plain, &recipients).expect("encrypt");
    let archive = dir.path().join("b.tar.gz.age");
    std::fs::write(&archive, sealed).expect("write archive");
    let key = dir.path().join("wrong.txt");
    std::fs::write(&key, format!("{}\n", wrong.to_string().expose_secret())).expect("key");
    // The kubeconfig points nowhere: the archive must be refused before any
    // connection, so nothing can be restored.
    let kubeconfig = unreachable_kubeconfig(dir.path());
    for command in ["inspect", "restore"] {
        let mut args = if command == "inspect" {
            vec!["backup", "inspect"]
        } else {
            vec!["restore"]
        };
        args.extend([
            archive.to_str().expect("utf-8"),
            "--identity",
            key.to_str().expect("utf-8"),
        ]);
        let out = kubesweep(&args, Some(&kubeconfig));
        assert_eq!(out.status.code(), Some(5), "{command}: {}", stderr(&out));
        let err = one_line(&out);
        assert!(err.contains("failed to decrypt"), "{command}: {err}");
    }
}

/// An interrupt ends the run even when nobody reads its output any more
/// (`kubesweep apply | tee log` with tee killed): the message it prints
/// cannot be written, and the signal must still end the process (it once
/// swallowed every later signal). Before any change, one is enough.
#[test]
fn an_interrupt_ends_the_run_even_when_its_output_is_closed() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // A server that accepts and never answers keeps the run waiting in its
    // first request (for its 10 s connect timeout) while the signal comes.
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let kubeconfig = kubeconfig_for(dir.path(), &format!("https://127.0.0.1:{port}"), "t");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesweep"))
        .args(["apply", "--yes", "--no-backup"])
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubesweep");
    // Both readers gone: every write of the child's fails from now on.
    drop(child.stdout.take());
    drop(child.stderr.take());
    accepted
        .recv_timeout(Duration::from_secs(30))
        .expect("kubesweep connects to the server");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = child.wait().expect("wait for kubesweep");
    // 3 would be the silent server's timeout: the signal was swallowed.
    assert_eq!(status.code(), Some(130), "{status:?}");
}
