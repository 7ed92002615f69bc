//! `apply --members` on a real fleet: three private control planes (a host
//! and two members, started in parallel), each seeded with the KubeSphere
//! footprint and its decoys, the host's Cluster objects pointing at the
//! members' kubeconfigs. One trio serves the whole binary, so the cases run
//! in order in one test: a member down stops the run before any change (the
//! host untouched), `--skip-unreachable` cleans the host and names the member
//! left, and with every member up the whole fleet ends clean. Throughout, a
//! member's kubeconfig appears in no output and no file kubesweep wrote.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::{assert_verdict_clean, explain};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kubesweep_fixtures::harness::PrivateControlPlane;
use kubesweep_fixtures::{Footprint, SeedOptions, footprint_state, seed, snapshot};
use serde_json::json;

struct Member {
    name: &'static str,
    plane: PrivateControlPlane,
}

/// Runs kubesweep against `kubeconfig` in `dir` (backups and audit records
/// land there).
fn kubesweep(args: &[&str], kubeconfig: &Path, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubesweep"))
        .current_dir(dir)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubesweep")
}

fn clusters(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cluster.kubesphere.io", "v1alpha1", "Cluster");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "clusters"),
    )
}

/// The host's Cluster object for a member: a direct connection with the
/// member's kubeconfig (base64, `format: byte` in the CRD), or a proxy one.
async fn add_member(host: &Client, name: &str, kubeconfig: Option<&[u8]>) {
    let connection = match kubeconfig {
        Some(bytes) => json!({"type": "direct",
            "kubeconfig": base64::engine::general_purpose::STANDARD.encode(bytes)}),
        None => json!({"type": "proxy", "token": "agent-token"}),
    };
    let object = json!({
        "apiVersion": "cluster.kubesphere.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "labels": {"kubesphere.io/managed": "true"}},
        "spec": {"provider": "kubesphere", "connection": connection},
    });
    clusters(host)
        .patch(
            name,
            &PatchParams::apply("fleet-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("create Cluster {name}: {e}"));
}

/// Seeds the default footprint; returns it.
async fn seeded(client: &Client) -> Footprint {
    seed(client, &SeedOptions::default())
        .await
        .expect("seed the footprint")
        .footprint
}

/// What must never appear in clear: the client key of a member's
/// kubeconfig and the base64 form the Cluster object holds.
fn secrets_of(kubeconfig: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(kubeconfig);
    let mut secrets: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("client-key-data:"))
        .map(|v| v.trim().to_owned())
        .collect();
    assert!(!secrets.is_empty(), "no client key in the test kubeconfig");
    secrets.push(base64::engine::general_purpose::STANDARD.encode(kubeconfig));
    secrets
}

fn assert_no_secret(what: &str, bytes: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in secrets {
        // A prefix long enough to be unique, short enough to catch a
        // truncated quote.
        let probe = &secret[..secret.len().min(48)];
        assert!(!text.contains(probe), "{what} holds a member's kubeconfig");
    }
}

fn assert_no_secret_in_files(dir: &Path, secrets: &[String]) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            assert_no_secret_in_files(&path, secrets);
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            assert_no_secret(&path.display().to_string(), &bytes, secrets);
        }
    }
}

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_first_then_the_host_and_an_unreachable_member_stops_the_host() {
    let started = std::time::Instant::now();
    // Three control planes at once: each `up` takes seconds, mostly waiting.
    let starts: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(PrivateControlPlane::start))
        .collect();
    let mut planes: Vec<PrivateControlPlane> = starts
        .into_iter()
        .map(|t| t.join().expect("control plane started"))
        .collect();
    let host = planes.remove(0);
    let members = [
        Member {
            name: "member-a",
            plane: planes.remove(0),
        },
        Member {
            name: "member-b",
            plane: planes.remove(0),
        },
    ];
    let host_client = host.client().await;
    let member_clients = [
        members[0].plane.client().await,
        members[1].plane.client().await,
    ];
    let (host_fp, fp_a, fp_b) = tokio::join!(
        seeded(&host_client),
        seeded(&member_clients[0]),
        seeded(&member_clients[1])
    );
    eprintln!(
        "[{:>5.1}s] planes up and seeded",
        started.elapsed().as_secs_f64()
    );
    let kubeconfigs: Vec<Vec<u8>> = members
        .iter()
        .map(|m| std::fs::read(m.plane.kubeconfig()).expect("member kubeconfig"))
        .collect();
    let secrets: Vec<String> = kubeconfigs.iter().flat_map(|k| secrets_of(k)).collect();
    for (member, kubeconfig) in members.iter().zip(&kubeconfigs) {
        add_member(&host_client, member.name, Some(kubeconfig)).await;
    }
    add_member(&host_client, "member-proxied", None).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let key = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret()))
            .expect("write key");
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "--members", "--yes", "--encrypt-to", &recipient];
        args.extend_from_slice(extra);
        kubesweep(&args, host.kubeconfig(), &work)
    };

    // The combined plan names every cluster, its identity and the proxied
    // member it cannot reach; exit 3 without --skip-unreachable.
    let plan = kubesweep(
        &["plan", "--members", "-o", "json"],
        host.kubeconfig(),
        &work,
    );
    assert_eq!(plan.status.code(), Some(3), "{}", explain(&plan));
    assert_no_secret("plan output", &plan.stdout, &secrets);
    assert_no_secret("plan stderr", &plan.stderr, &secrets);
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let names: Vec<&str> = doc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["member-a", "member-b", "host"], "{doc:#}");
    assert!(
        doc["clusters"]
            .as_array()
            .expect("clusters")
            .iter()
            .all(|c| c["identity"]["kube_system_uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
                && c["actions"].as_u64().is_some_and(|n| n > 0)),
        "{doc:#}"
    );
    assert_eq!(doc["unreachable"][0]["name"], "member-proxied", "{doc:#}");
    assert!(
        doc["unreachable"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("proxy")),
        "{doc:#}"
    );

    eprintln!(
        "[{:>5.1}s] plan --members done",
        started.elapsed().as_secs_f64()
    );
    // Case 1: member-b down (and member-proxied unreachable): nothing
    // changes anywhere, the host included.
    members[1].plane.stop("kube-apiserver");
    let host_before = footprint_state(&host_client, &host_fp)
        .await
        .expect("state");
    let a_before = footprint_state(&member_clients[0], &fp_a)
        .await
        .expect("state");
    let refused = apply(&[]);
    assert_eq!(refused.status.code(), Some(3), "{}", explain(&refused));
    let said = out(&refused);
    assert!(
        said.contains("member-b")
            && said.contains("member-proxied")
            && said.contains("nothing was changed"),
        "{}",
        explain(&refused)
    );
    assert_eq!(
        footprint_state(&host_client, &host_fp)
            .await
            .expect("state"),
        host_before,
        "the host changed although a member was unreachable"
    );
    assert_eq!(
        footprint_state(&member_clients[0], &fp_a)
            .await
            .expect("state"),
        a_before,
        "member-a changed although the run was refused"
    );
    assert_eq!(
        clusters(&host_client)
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        4,
        "the host's Cluster objects changed"
    );

    eprintln!("[{:>5.1}s] case 1 done", started.elapsed().as_secs_f64());
    // Case 2: --skip-unreachable: member-a and the host end clean, the
    // report names what is left and how to finish it; exit 1.
    let host_snapshot = snapshot(&host_client, &host_fp).await.expect("snapshot");
    let a_snapshot = snapshot(&member_clients[0], &fp_a).await.expect("snapshot");
    let skipped = apply(&["--skip-unreachable"]);
    assert_eq!(skipped.status.code(), Some(1), "{}", explain(&skipped));
    let said = out(&skipped);
    for needle in [
        "member member-a: clean",
        "host host: clean",
        "member member-b: NOT cleaned",
        "kubesweep apply --kubeconfig <kubeconfig of member member-b>",
        "member member-proxied: NOT cleaned",
    ] {
        assert!(
            said.contains(needle),
            "no {needle:?} in\n{}",
            explain(&skipped)
        );
    }
    assert_verdict_clean(&host_client, &host_fp, &host_snapshot).await;
    assert_verdict_clean(&member_clients[0], &fp_a, &a_snapshot).await;
    for (name, kubeconfig) in [
        ("host", host.kubeconfig()),
        ("member-a", members[0].plane.kubeconfig()),
    ] {
        let verify = kubesweep(&["verify"], kubeconfig, &work);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{name}: {}",
            explain(&verify)
        );
    }
    assert_no_secret("apply output", &skipped.stdout, &secrets);
    assert_no_secret("apply stderr", &skipped.stderr, &secrets);

    eprintln!("[{:>5.1}s] case 2 done", started.elapsed().as_secs_f64());
    // Case 3: member-b back, the fleet seeded again: the whole fleet ends
    // clean, every cluster's decoys intact.
    members[1].plane.start_component("kube-apiserver");
    // member-b was never touched: only the host and member-a need seeding.
    let (host_fp, fp_a) = tokio::join!(seeded(&host_client), seeded(&member_clients[0]));
    eprintln!(
        "[{:>5.1}s] fleet seeded again",
        started.elapsed().as_secs_f64()
    );
    for (member, kubeconfig) in members.iter().zip(&kubeconfigs) {
        add_member(&host_client, member.name, Some(kubeconfig)).await;
    }
    // verify --members reads every cluster: all three hold the footprint.
    let verify = kubesweep(&["verify", "--members"], host.kubeconfig(), &work);
    assert_eq!(verify.status.code(), Some(1), "{}", explain(&verify));
    let said = out(&verify);
    for heading in [
        "== member member-a ",
        "== member member-b ",
        "== host host ",
    ] {
        assert!(
            said.contains(heading),
            "no {heading:?} in\n{}",
            explain(&verify)
        );
    }
    assert_no_secret("verify output", &verify.stdout, &secrets);
    let fps = [&host_fp, &fp_a, &fp_b];
    let clients = [&host_client, &member_clients[0], &member_clients[1]];
    let mut before = Vec::new();
    for (client, fp) in clients.iter().zip(fps) {
        before.push(snapshot(client, fp).await.expect("snapshot"));
    }
    let whole = apply(&[]);
    assert_eq!(whole.status.code(), Some(0), "{}", explain(&whole));
    let said = out(&whole);
    assert!(
        said.contains("member member-a: clean")
            && said.contains("member member-b: clean")
            && said.contains("host host: clean"),
        "{}",
        explain(&whole)
    );
    // Members first: the host's run starts after both members ended.
    let host_at = said.find("host host: applying").expect("host ran");
    for m in ["member member-a: clean", "member member-b: clean"] {
        assert!(
            said.find(m).is_some_and(|at| at < host_at),
            "{}",
            explain(&whole)
        );
    }
    for ((client, fp), before) in clients.iter().zip(fps).zip(&before) {
        assert_verdict_clean(client, fp, before).await;
    }
    for (name, kubeconfig) in [
        ("host", host.kubeconfig()),
        ("member-a", members[0].plane.kubeconfig()),
        ("member-b", members[1].plane.kubeconfig()),
    ] {
        let verify = kubesweep(&["verify"], kubeconfig, &work);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{name}: {}",
            explain(&verify)
        );
    }
    assert_no_secret("apply output", &whole.stdout, &secrets);
    assert_no_secret("apply stderr", &whole.stderr, &secrets);

    eprintln!(
        "[{:>5.1}s] case 3 applied and checked",
        started.elapsed().as_secs_f64()
    );
    // Backups: one directory per cluster, named by cluster name and
    // kube-system UID, archives encrypted; nothing kubesweep wrote holds a
    // kubeconfig in clear.
    let backups = work.join("kubesweep-backups");
    let mut dirs: Vec<String> = std::fs::read_dir(&backups)
        .expect("backups")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    for prefix in ["host-", "member-a-", "member-b-"] {
        assert!(dirs.iter().any(|d| d.starts_with(prefix)), "{dirs:?}");
    }
    assert_no_secret_in_files(&work, &secrets);

    // `restore` restores one cluster's archive: member-b's onto member-b
    // (dry run), and is refused on the host (another cluster's backup).
    let b_dir = dirs
        .iter()
        .find(|d| d.starts_with("member-b-"))
        .expect("member-b's backups");
    let archive = std::fs::read_dir(backups.join(b_dir))
        .expect("member-b backup dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz.age"))
        .expect("member-b archive");
    let restore = |kubeconfig: &Path| {
        kubesweep(
            &[
                "restore",
                archive.to_str().expect("utf-8"),
                "--dry-run",
                "--identity",
                key.to_str().expect("utf-8"),
            ],
            kubeconfig,
            &work,
        )
    };
    let own = restore(members[1].plane.kubeconfig());
    assert_eq!(own.status.code(), Some(0), "{}", explain(&own));
    let other = restore(host.kubeconfig());
    assert_eq!(other.status.code(), Some(6), "{}", explain(&other));
}
