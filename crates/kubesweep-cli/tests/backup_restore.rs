//! Backup and restore with the `kubesweep` binary against the real control
//! plane, on the seeded KubeSphere 4.1 footprint: `apply` writes a private,
//! verified archive before its first change; `restore` brings back every
//! removed object and the KubeSphere keys of kept namespaces; damaged
//! archives are refused before anything is created; an unusable backup
//! directory stops `apply` before any change; an encrypted archive needs its
//! identity.
//!
//! All tests use the footprint's fixed names, so each takes the cluster lock.

#![allow(clippy::await_holding_lock)] // the harness lock serialises whole tests by design

mod common;

use common::*;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use kubesweep_fixtures::{Role, footprint_objects, footprint_state};
use serde_json::{Value, json};

/// Whether `path` is an audit record (`apply` writes one next to the archive).
fn is_audit(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("kubesweep-audit-") && n.ends_with(".jsonl"))
}

/// The one archive `apply` wrote into `dir`.
fn only_archive(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("backup dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| !is_audit(p))
        .collect();
    assert_eq!(
        files.len(),
        1,
        "exactly one archive, no leftovers: {files:?}"
    );
    files.into_iter().next().expect("archive")
}

/// The lines of the one audit record `apply` wrote into `dir`.
fn audit_lines(dir: &Path) -> Vec<Value> {
    let audits: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("backup dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| is_audit(p))
        .collect();
    assert_eq!(audits.len(), 1, "one audit record: {audits:?}");
    assert_eq!(
        mode(&audits[0]),
        0o600,
        "the audit record names every object"
    );
    std::fs::read_to_string(&audits[0])
        .expect("read audit")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// What a restore must bring back: every field but server-set metadata and
/// status; owner references by kind and name (owners get new UIDs).
fn restorable(object: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in object.as_object().expect("object") {
        match k.as_str() {
            "status" => {}
            "metadata" => {
                let owners: Vec<Value> = v
                    .get("ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| json!({"kind": r["kind"], "name": r["name"]}))
                    .collect();
                out.insert(
                    "metadata".into(),
                    json!({
                        "labels": v.get("labels").cloned().unwrap_or(json!({})),
                        "annotations": v.get("annotations").cloned().unwrap_or(json!({})),
                        // A set to the API: put back after the ones that stayed.
                        "finalizers": sorted(v.get("finalizers")),
                        "ownerReferences": owners,
                    }),
                );
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut out = Value::Object(out);
    // The server derives a Job's selector and pod labels from its new UID.
    if out["kind"] == "Job" {
        if let Some(spec) = out["spec"].as_object_mut() {
            spec.remove("selector");
        }
        if let Some(labels) = out
            .pointer_mut("/spec/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove("controller-uid");
            labels.remove("batch.kubernetes.io/controller-uid");
        }
    }
    out
}

fn sorted(list: Option<&Value>) -> Vec<String> {
    let mut items: Vec<String> = list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    items.sort();
    items
}

fn damaged_copies(archive: &Path, dir: &Path) -> Vec<(String, PathBuf)> {
    let bytes = std::fs::read(archive).expect("read archive");
    let truncated = dir.join("truncated.tar.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let mut flipped_bytes = bytes.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x55;
    let flipped = dir.join("flipped.tar.gz");
    std::fs::write(&flipped, &flipped_bytes).expect("write");
    let tail = dir.join("tail-cut.tar.gz");
    std::fs::write(&tail, &bytes[..bytes.len() - 4]).expect("write");
    vec![
        ("truncated".into(), truncated),
        ("flipped byte".into(), flipped),
        ("trailer cut".into(), tail),
    ]
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// A copy of `archive` whose metadata.json names another kube-system UID
/// (one hex digit changed, same length, so the tar stays valid), gzipped
/// again: every checksum inside still holds.
fn edited_metadata_copy(archive: &Path, dir: &Path) -> PathBuf {
    use std::io::{Read, Write};
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::read(archive).expect("read").as_slice())
        .read_to_end(&mut tar)
        .expect("gunzip");
    let key = b"\"kube_system_uid\": \"";
    let at = tar
        .windows(key.len())
        .position(|w| w == key)
        .expect("metadata.json names the kube-system UID")
        + key.len();
    tar[at] = if tar[at] == b'0' { b'1' } else { b'0' };
    let copy = dir.join("edited-metadata.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    std::fs::write(&copy, gz.finish().expect("gzip")).expect("write");
    copy
}

#[tokio::test]
async fn apply_backs_up_first_and_restore_brings_everything_back() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let before = footprint_objects(&client, &footprint)
        .await
        .expect("read before");
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("backups");
    let before_state = footprint_state(&client, &footprint).await.expect("state");

    let apply = kubesweep(&["apply", "--yes", "--backup-dir", utf8(&backups)]);
    assert_eq!(apply.status.code(), Some(0), "{}", explain(&apply));
    let archive = only_archive(&backups);
    assert_eq!(mode(&archive), 0o600, "the archive holds Secrets");
    // The backup came before the first change: every archived object of the
    // footprint is the version seen before `apply` ran (same UID, same
    // resourceVersion), not one a phase had already patched.
    let stored = kubesweep::backup::read_backup(&archive, None).expect("read the archive");
    let mut compared = 0;
    for object in &stored.objects {
        let entry = &object.entry;
        let key = footprint
            .objects
            .iter()
            .find(|o| {
                o.key.kind == entry.kind
                    && o.key.api_version.rsplit_once('/').map_or("", |(g, _)| g)
                        == entry.resource.group
                    && o.key.name == entry.name
                    && o.key.namespace == entry.namespace
            })
            .map(|o| o.key.to_string());
        let Some(Some(Some((uid, rv)))) = key.map(|k| before_state.get(&k).cloned()) else {
            continue;
        };
        assert_eq!(entry.uid, uid, "{}", entry.name);
        assert_eq!(
            object.object["metadata"]["resourceVersion"].as_str(),
            Some(rv.as_str()),
            "{} {} was archived after it changed",
            entry.kind,
            entry.name
        );
        compared += 1;
    }
    assert!(compared > 50, "only {compared} archived objects compared");
    // The audit record: one line per write, each naming object, UID,
    // operation, the plan's reason and the result; all of them done here,
    // and every platform object that is gone now has its line.
    let audit = audit_lines(&backups);
    assert!(!audit.is_empty());
    for line in &audit {
        for field in [
            "time",
            "phase",
            "kind",
            "name",
            "uid",
            "operation",
            "reason",
            "result",
        ] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
        assert!(
            matches!(line["result"].as_str(), Some("done" | "already-gone")),
            "{line}"
        );
    }
    let audited_uids: std::collections::HashSet<&str> =
        audit.iter().filter_map(|l| l["uid"].as_str()).collect();
    let after_apply = footprint_state(&client, &footprint).await.expect("state");
    for object in footprint.with_role(Role::Platform) {
        let key = object.key.to_string();
        if after_apply[&key].is_none()
            && let Some(Some((uid, _))) = before_state.get(&key)
            && object.key.kind != "Namespace"
        {
            // Objects inside a deleted namespace go with it: no write of ours.
            if object.key.namespace.is_none() {
                assert!(
                    audited_uids.contains(uid.as_str()),
                    "no audit line for {key}"
                );
            }
        }
    }

    let inspect = kubesweep(&["backup", "inspect", utf8(&archive), "-o", "json"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", explain(&inspect));
    let listing: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let entries = listing["entries"].as_array().expect("entries");
    let has = |kind: &str, name: &str| {
        entries
            .iter()
            .any(|e| e["kind"] == kind && e["name"] == name)
    };
    assert!(has("CustomResourceDefinition", "users.iam.kubesphere.io"));
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "User" && e["name"] == "admin" && e["terminating"] == true),
        "Terminating objects are backed up too"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "Secret" && e["namespace"] == "kubesphere-system"),
        "the content of deleted namespaces is backed up"
    );
    let default_ns = entries
        .iter()
        .find(|e| e["kind"] == "Namespace" && e["name"] == "default")
        .expect("kept namespace in the index");
    assert_eq!(default_ns["restore"], "put-back");
    assert!(
        default_ns["removed"]["labels"]
            .as_object()
            .is_some_and(|l| !l.is_empty())
    );
    for e in entries {
        let path = e["path"].as_str().expect("path");
        let group = e["resource"]["group"].as_str().expect("group");
        let expected = format!(
            "resources/{}/{}/{}/{}/{}.yaml",
            if group.is_empty() { "core" } else { group },
            e["resource"]["version"].as_str().expect("version"),
            e["kind"].as_str().expect("kind"),
            e["namespace"].as_str().unwrap_or("_cluster"),
            e["name"].as_str().expect("name")
        );
        assert_eq!(path, expected);
        assert_eq!(e["sha256"].as_str().map(str::len), Some(64));
    }

    // Damaged copies are refused before anything is created.
    let state = footprint_state(&client, &footprint).await.expect("state");
    for (what, copy) in damaged_copies(&archive, dir.path()) {
        let out = kubesweep(&["restore", utf8(&copy)]);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", explain(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refusing backup"),
            "{what}: {}",
            explain(&out)
        );
        let out = kubesweep(&["backup", "inspect", utf8(&copy)]);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", explain(&out));
    }
    // An edit of metadata.json inside a re-compressed archive: here the
    // cluster's identity, which would let the backup pass for one of another
    // cluster. Nothing inside the archive vouches for metadata.json, so only
    // the sha256 printed when it was written catches it.
    let printed = sha256_of(&archive);
    let edited = edited_metadata_copy(&archive, dir.path());
    let out = kubesweep(&["backup", "inspect", utf8(&edited)]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    for args in [
        vec!["backup", "inspect", "--sha256", &printed, utf8(&edited)],
        vec!["restore", "--sha256", &printed, utf8(&edited)],
    ] {
        let out = kubesweep(&args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", explain(&out));
        assert!(
            stderr(&out).contains("the file changed after it was written"),
            "{}",
            explain(&out)
        );
    }
    let sha_prefixed = format!("sha256:{printed}");
    let out = kubesweep(&[
        "backup",
        "inspect",
        "--sha256",
        &sha_prefixed,
        utf8(&archive),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await.expect("state"),
        "a refused restore changed the cluster"
    );

    let dry = kubesweep(&["restore", "--dry-run", utf8(&archive)]);
    assert_eq!(dry.status.code(), Some(0), "{}", explain(&dry));
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await.expect("state"),
        "a dry run changed the cluster"
    );

    let start = Instant::now();
    let restore = kubesweep(&["restore", utf8(&archive)]);
    assert_eq!(restore.status.code(), Some(0), "{}", explain(&restore));
    eprintln!(
        "restore of {} bytes took {:.1}s",
        std::fs::metadata(&archive).expect("stat").len(),
        start.elapsed().as_secs_f64()
    );

    let after = footprint_objects(&client, &footprint)
        .await
        .expect("read after");
    let mut differences = Vec::new();
    for object in &footprint.objects {
        let key = object.key.to_string();
        let (Some(was), now) = (&before[&key], &after[&key]) else {
            continue;
        };
        let Some(now) = now else {
            differences.push(format!("{key}: not restored"));
            continue;
        };
        let mut was = restorable(was);
        if was["kind"] == "Cluster" && was["apiVersion"] == "cluster.kubesphere.io/v1alpha1" {
            // An unencrypted backup leaves a Cluster object's credentials out
            // (a member's kubeconfig is cluster-admin there): it comes back
            // without them, by design, and must not come back with them.
            for field in ["kubeconfig", "token"] {
                assert!(
                    now.pointer(&format!("/spec/connection/{field}")).is_none(),
                    "{key}: {field} restored from an unencrypted backup"
                );
                if let Some(connection) = was
                    .pointer_mut("/spec/connection")
                    .and_then(Value::as_object_mut)
                {
                    connection.remove(field);
                }
            }
        }
        let was = &was;
        if *was != restorable(now) {
            differences.push(format!(
                "{key}:\n  before {}\n  after  {}",
                was,
                restorable(now)
            ));
        }
        if object.role == Role::Platform && object.terminating {
            assert!(
                now.pointer("/metadata/deletionTimestamp").is_none(),
                "{key} comes back live"
            );
        }
    }
    assert!(
        differences.is_empty(),
        "restore did not bring back:\n{}",
        differences.join("\n")
    );
    let kept: BTreeMap<&str, &Value> = footprint
        .system_namespaces()
        .into_iter()
        .chain(footprint.user_namespaces())
        .filter_map(|n| after[&format!("Namespace {n}")].as_ref().map(|v| (n, v)))
        .collect();
    assert!(
        kept.values().any(|ns| ns["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.keys().any(|k| k.contains("kubesphere.io")))),
        "kept namespaces have their KubeSphere keys back"
    );

    // A second restore finds everything in place and changes nothing.
    let state = footprint_state(&client, &footprint).await.expect("state");
    let again = kubesweep(&["restore", utf8(&archive)]);
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await.expect("state"),
        "a second restore changed the cluster"
    );
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn an_unusable_backup_directory_stops_apply_before_any_change() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory cannot be created below a regular file, even as root.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").expect("write");
    let state = footprint_state(&client, &footprint).await.expect("state");

    let out = kubesweep(&[
        "apply",
        "--yes",
        "--backup-dir",
        utf8(&file.join("backups")),
    ]);
    assert_eq!(out.status.code(), Some(8), "{}", explain(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("backup failed") && stderr.contains("nothing was changed"),
        "{}",
        explain(&out)
    );
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await.expect("state"),
        "apply changed the cluster although its backup failed"
    );
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn an_encrypted_backup_cannot_be_read_without_its_identity() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret()))
            .expect("write key");
    }
    let recipient = identity.to_public().to_string();
    let archive = dir.path().join("sealed.tar.gz.age");
    let state = footprint_state(&client, &footprint).await.expect("state");

    let out = kubesweep(&["backup", "-o", utf8(&archive), "--encrypt-to", &recipient]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await.expect("state"),
        "backup changed the cluster"
    );
    assert_eq!(mode(&archive), 0o600);
    let bytes = std::fs::read(&archive).expect("read");
    assert!(bytes.starts_with(b"age-encryption.org/"));
    assert!(
        !bytes.windows(17).any(|w| w == b"kubesphere-system"),
        "nothing readable without the identity"
    );

    for args in [
        vec!["backup", "inspect", utf8(&archive)],
        vec!["restore", utf8(&archive)],
    ] {
        let out = kubesweep(&args);
        assert_eq!(out.status.code(), Some(5), "{}", explain(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--identity"),
            "{}",
            explain(&out)
        );
    }
    let out = kubesweep(&[
        "backup",
        "inspect",
        utf8(&archive),
        "--identity",
        utf8(&key),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("every checksum verified"),
        "{}",
        explain(&out)
    );
    let out = kubesweep(&[
        "restore",
        "--dry-run",
        utf8(&archive),
        "--identity",
        utf8(&key),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    reset(&client, &footprint).await;
}
