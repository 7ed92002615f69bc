//! The `kubesweep` binary against the real control plane in each role a
//! KubeSphere multi-cluster setup gives a cluster (issue 14):
//!
//! - a *member* (`seed_member`): ks-core running as `ks-agent`, an extension's
//!   `<ext>-agent` release proven only by its label (no InstallPlan on a
//!   member), synced workspaces and IAM copies: `plan` + `apply` leave it
//!   clean, foreign objects (a same-named foreign `<ext>-agent` release
//!   among them) keep UID and resourceVersion, user namespaces keep every
//!   label that is not the platform's;
//! - a *host* with Cluster objects for its members and the Fail webhook of
//!   kubesphere#6154 (`seed_host_clusters`): the objects go (webhook first),
//!   in their own phase after every other custom resource, and the member
//!   kubeconfigs appear nowhere in clear: not in the plan, the output, the
//!   audit record or the (unencrypted) backup; an encrypted backup keeps them.
//!
//! Both seed cluster-wide objects with fixed names: cluster lock.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kubesweep_fixtures::harness::{cluster_lock, shared_client, teardown_on_panic};
use kubesweep_fixtures::kubesphere_member::{
    AGENT_RELEASE, CLUSTER_WEBHOOK, DECOY_AGENT_RELEASE, HOST_CLUSTER, KS_AGENT,
};
use kubesweep_fixtures::kubesphere_v4::EXTENSION_NAMESPACE;
use kubesweep_fixtures::{
    Profile, Role, SeedOptions, footprint_state, seed_host_clusters, seed_member, snapshot,
    teardown,
};
use serde_json::Value;

fn member_options() -> SeedOptions {
    SeedOptions {
        profile: Profile::KubesphereMember,
        ..SeedOptions::default()
    }
}

/// `(kind, namespace/name)` of every action of a phase of a plan file.
fn phase_targets(plan: &Value, phase: &str) -> Vec<(String, String)> {
    plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|p| p["id"] == phase)
        .flat_map(|p| p["actions"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let t = &a["target"];
            let ns = t["namespace"].as_str().unwrap_or_default();
            let name = t["name"].as_str().unwrap_or_default();
            (
                t["resource"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                if ns.is_empty() {
                    name.to_owned()
                } else {
                    format!("{ns}/{name}")
                },
            )
        })
        .collect()
}

fn read_plan(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read plan")).expect("plan is JSON")
}

#[tokio::test]
async fn member_apply_removes_the_member_footprint_and_keeps_decoys_and_user_labels() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let opts = member_options();
    let footprint = seed_member(&client, &opts)
        .await
        .expect("seed the member footprint")
        .footprint;
    let _teardown = teardown_on_panic(&footprint, &opts);
    let before = snapshot(&client, &footprint)
        .await
        .expect("snapshot before");

    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");
    let plan = kubesweep(&["plan", "-o", utf8(&plan_file)]);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let planned = read_plan(&plan_file);

    // The releases: ks-core (whose Deployment is ks-agent) and the
    // extension's agent by its label; the foreign release of the same name
    // in another namespace is not touched.
    let records = phase_targets(&planned, "helm-records");
    let ks_core = "kubesphere-system/sh.helm.release.v1.ks-core.v1".to_owned();
    let agent = format!("{EXTENSION_NAMESPACE}/sh.helm.release.v1.{AGENT_RELEASE}.v1");
    let decoy = format!("acme-system/sh.helm.release.v1.{DECOY_AGENT_RELEASE}.v1");
    let record_names: Vec<&String> = records.iter().map(|(_, n)| n).collect();
    assert!(record_names.contains(&&ks_core), "{records:?}");
    assert!(record_names.contains(&&agent), "{records:?}");
    assert!(!record_names.contains(&&decoy), "{records:?}");
    let workloads = phase_targets(&planned, "helm-workloads");
    assert!(
        workloads.contains(&("Deployment".into(), format!("kubesphere-system/{KS_AGENT}"))),
        "ks-agent stops first: {workloads:?}"
    );
    let every_target = serde_json::to_string(&planned["phases"]).expect("json");
    assert!(
        !every_target.contains("acme-system"),
        "nothing in acme-system is planned"
    );

    let apply = kubesweep(&[
        "apply",
        utf8(&plan_file),
        "--yes",
        "--backup-dir",
        utf8(&dir.path().join("b")),
    ]);
    assert_applied_clean(&apply);

    let state = footprint_state(&client, &footprint)
        .await
        .expect("read the footprint state");
    // The shared Application CRD is kept by default (other software's
    // Applications may use it), as on a host.
    let left: Vec<String> = footprint
        .with_role(Role::Platform)
        .filter(|o| o.key.name != "applications.app.k8s.io")
        .map(|o| o.key.to_string())
        .filter(|key| state[key].is_some())
        .collect();
    assert!(left.is_empty(), "platform objects still there: {left:?}");

    // Foreign objects: same UID, same resourceVersion (the verdict below
    // compares them whole; said here explicitly).
    let after = snapshot(&client, &footprint).await.expect("snapshot after");
    for o in footprint.decoys() {
        let key = o.key.to_string();
        let (b, a) = (&before.objects[&key], &after.objects[&key]);
        let b = b.as_ref().unwrap_or_else(|| panic!("{key} seeded"));
        let a = a.as_ref().unwrap_or_else(|| panic!("{key} was removed"));
        assert_eq!(b["metadata"]["uid"], a["metadata"]["uid"], "{key}");
        assert_eq!(
            b["metadata"]["resourceVersion"], a["metadata"]["resourceVersion"],
            "{key}"
        );
    }
    assert_verdict_clean(&client, &footprint, &before).await;

    // User and system namespaces: kept, platform keys gone, every other
    // label exactly as before.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kept: Vec<&str> = footprint
        .system_namespaces()
        .into_iter()
        .chain(footprint.user_namespaces())
        .collect();
    assert!(kept.len() > 4, "{kept:?}");
    for name in kept {
        assert_namespace_kept_clean(&namespaces, name).await;
        let key = format!("Namespace {name}");
        let labels = |v: &Value| -> BTreeMap<String, Value> {
            v["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !kubesweep_fixtures::verdict::is_platform_key(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let b = before.objects.get(&key).cloned().flatten();
        let a = after.objects.get(&key).cloned().flatten();
        let (b, a) = (b.expect("namespace before"), a.expect("namespace after"));
        assert_eq!(labels(&b), labels(&a), "{name}");
    }

    teardown(&client, &footprint, &opts)
        .await
        .expect("teardown");
}

fn clusters_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cluster.kubesphere.io", "v1alpha1", "Cluster");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// Every file of a `.tar.gz` archive, concatenated.
fn archive_text(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open archive");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut all = Vec::new();
    for entry in archive.entries().expect("entries") {
        entry.expect("entry").read_to_end(&mut all).expect("read");
    }
    all
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn host_cluster_objects_go_despite_the_fail_webhook_and_kubeconfigs_stay_secret() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    // Kubeconfigs whose bytes are easy to find: a marker unique to this run.
    let marker = format!("kubesweep-member-secret-{}", std::process::id());
    let kubeconfig = |m: &str| {
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: {marker}-{m}\n"
        )
        .into_bytes()
    };
    let members = vec![
        ("member-1".to_owned(), kubeconfig("1")),
        ("member-2".to_owned(), kubeconfig("2")),
    ];
    let footprint = seed_host_clusters(&client, &members)
        .await
        .expect("seed the host's Cluster objects")
        .footprint;
    let _teardown = teardown_on_panic(&footprint, &SeedOptions::default());
    let clusters = clusters_api(&client);
    let host = clusters.get(HOST_CLUSTER).await.expect("host Cluster");
    assert!(
        host.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("cluster-role.kubesphere.io/host"))
    );

    // The fixture reproduces kubesphere#6154: the webhook rejects the
    // finalizer patch kubectl-based scripts send.
    let strip = serde_json::json!({"metadata": {"finalizers": null}});
    let rejected = clusters
        .patch("member-1", &PatchParams::default(), &Patch::Merge(&strip))
        .await;
    assert!(
        rejected.is_err(),
        "the Fail webhook must block the finalizer patch"
    );

    let secrets: Vec<Vec<u8>> = members
        .iter()
        .flat_map(|(_, k)| {
            [
                k.clone(),
                base64::engine::general_purpose::STANDARD
                    .encode(k)
                    .into_bytes(),
            ]
        })
        .chain([marker.clone().into_bytes()])
        .collect();
    let assert_secret_free = |what: &str, bytes: &[u8]| {
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_slice()),
                "{what} holds a member kubeconfig in clear"
            );
        }
    };

    let dir = tempfile::tempdir().expect("tempdir");

    // An encrypted backup keeps the kubeconfigs (restorable), unreadable in the file.
    let identity = age::x25519::Identity::generate();
    let encrypted = dir.path().join("host.tar.gz.age");
    let backup = kubesweep(&[
        "backup",
        "-o",
        utf8(&encrypted),
        "--encrypt-to",
        &identity.to_public().to_string(),
    ]);
    assert_eq!(backup.status.code(), Some(0), "{}", explain(&backup));
    let sealed = std::fs::read(&encrypted).expect("read encrypted backup");
    assert_secret_free("the encrypted backup file", &sealed);
    let decryptor = age::Decryptor::new(&sealed[..]).expect("age file");
    let mut plain = Vec::new();
    decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .expect("decrypt")
        .read_to_end(&mut plain)
        .expect("read");
    let opened = dir.path().join("opened.tar.gz");
    std::fs::write(&opened, &plain).expect("write");
    let text = archive_text(&opened);
    let kept = base64::engine::general_purpose::STANDARD.encode(&members[0].1);
    assert!(
        text.windows(kept.len()).any(|w| w == kept.as_bytes()),
        "an encrypted backup keeps the member kubeconfig"
    );

    let plan_file = dir.path().join("plan.json");
    let plan = kubesweep(&["plan", "-o", utf8(&plan_file)]);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let shown = kubesweep(&["plan", "--details"]);
    assert_eq!(shown.status.code(), Some(0), "{}", explain(&shown));
    let shown_json = kubesweep(&["plan", "-o", "json"]);
    let shown_yaml = kubesweep(&["plan", "-o", "yaml", "-v"]);
    for (what, out) in [
        ("plan", &plan),
        ("plan --details", &shown),
        ("plan -o json", &shown_json),
        ("plan -o yaml -v", &shown_yaml),
    ] {
        assert_secret_free(what, &out.stdout);
        assert_secret_free(what, &out.stderr);
    }
    assert_secret_free("the plan file", &std::fs::read(&plan_file).expect("plan"));

    // Order: the webhook first, the Cluster objects in their own phase after
    // the other custom resources.
    let planned = read_plan(&plan_file);
    let webhooks = phase_targets(&planned, "validating-webhooks");
    assert!(
        webhooks.contains(&(
            "ValidatingWebhookConfiguration".into(),
            CLUSTER_WEBHOOK.into()
        )),
        "{webhooks:?}"
    );
    let registrations = phase_targets(&planned, "cluster-registrations");
    for name in [HOST_CLUSTER, "member-1", "member-2"] {
        assert!(
            registrations.contains(&("Cluster".into(), name.into())),
            "{registrations:?}"
        );
    }
    assert!(
        phase_targets(&planned, "custom-resources")
            .iter()
            .all(|(kind, _)| kind != "Cluster")
    );
    let ids: Vec<&str> = planned["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    let at = |id: &str| ids.iter().position(|x| *x == id).expect(id);
    assert!(at("validating-webhooks") < at("custom-resources"));
    assert!(at("custom-resources") < at("cluster-registrations"));
    assert!(at("cluster-registrations") < at("crds"));

    let backups = dir.path().join("backups");
    let apply = kubesweep(&[
        "apply",
        utf8(&plan_file),
        "--yes",
        "--backup-dir",
        utf8(&backups),
    ]);
    assert_applied_clean(&apply);
    assert_secret_free("apply's output", &apply.stdout);
    assert_secret_free("apply's log", &apply.stderr);
    assert!(
        stderr(&apply).contains("Cluster/member-1"),
        "the redaction is reported: {}",
        explain(&apply)
    );

    let written = files_in(&backups);
    let archive = written
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap_or_else(|| panic!("no backup archive in {written:?}"));
    for file in &written {
        assert_secret_free(
            &file.display().to_string(),
            &std::fs::read(file).expect("read"),
        );
    }
    let text = archive_text(archive);
    assert!(
        String::from_utf8_lossy(&text).contains("member-1"),
        "the Cluster objects are in the backup"
    );
    assert_secret_free("the backup's content", &text);

    let state = footprint_state(&client, &footprint)
        .await
        .expect("read the footprint state");
    let left: Vec<&String> = state
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    teardown(&client, &footprint, &SeedOptions::default())
        .await
        .expect("teardown");
}
