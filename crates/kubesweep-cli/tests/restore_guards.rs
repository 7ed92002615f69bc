//! `restore` against the real control plane, on archives written here with
//! the library's own encoder (so every checksum is valid):
//! - a backup of another cluster is refused (exit 6, nothing created), with
//!   or without `--overwrite`, unless `--to-other-cluster` says so;
//! - a custom resource whose type has a status subresource comes back with
//!   its status (the server drops `status` on create; restore writes it back).
//!
//! Every object has a unique name: these tests run in parallel with others.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use kubesweep::backup::{BackupObject, MetadataInput, RestoreMode, Source, encode};
use kubesweep::inventory::{ClusterIdentity, types};
use kubesweep::resource::ResourceType;
use kubesweep_fixtures::harness::{shared_client, unique_name};
use serde_json::{Value, json};

fn recreate(resource: ResourceType, object: Value) -> BackupObject {
    BackupObject {
        resource,
        object,
        operations: vec!["delete".into()],
        source: Source::PlanTarget,
        mode: RestoreMode::Recreate,
        removed: None,
    }
}

fn write_archive(dir: &Path, cluster: ClusterIdentity, objects: &[BackupObject]) -> PathBuf {
    let bytes = encode(
        objects,
        &MetadataInput {
            cluster,
            profile: "kubesphere".into(),
            plan_digest: "test".into(),
            incomplete: Vec::new(),
        },
    )
    .expect("encode archive");
    let path = dir.join("backup.tar.gz");
    std::fs::write(&path, bytes).expect("write archive");
    path
}

async fn this_cluster(client: &Client) -> ClusterIdentity {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let uid = namespaces
        .get("kube-system")
        .await
        .expect("kube-system")
        .uid()
        .expect("uid");
    ClusterIdentity {
        kube_system_uid: uid,
        server: String::new(),
        context: None,
    }
}

#[tokio::test]
async fn a_backup_of_another_cluster_is_refused_unless_asked_for() {
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique_name("restore-other");
    let archive = write_archive(
        dir.path(),
        ClusterIdentity {
            kube_system_uid: "00000000-0000-0000-0000-000000000000".into(),
            server: "https://elsewhere.example.com:6443".into(),
            context: None,
        },
        &[recreate(
            types::namespace(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "uid": "old-uid", "resourceVersion": "1"}}),
        )],
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["restore", utf8(&archive)];
        args.extend_from_slice(extra);
        let out = kubesweep(&args);
        assert_eq!(out.status.code(), Some(6), "{}", explain(&out));
        assert!(
            stderr(&out).contains("another cluster"),
            "{}",
            explain(&out)
        );
        assert!(
            namespaces.get_opt(&name).await.expect("get").is_none(),
            "a refused restore created {name}"
        );
    }
    let out = kubesweep(&["restore", utf8(&archive), "--to-other-cluster"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(namespaces.get_opt(&name).await.expect("get").is_some());
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_custom_resource_comes_back_with_its_status() {
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let group = format!("{}.restore-test.example.com", unique_name("st"));
    let crd_name = format!("gauges.{group}");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name, "uid": "old-crd", "resourceVersion": "1"},
        "spec": {"group": group, "scope": "Cluster",
                 "names": {"plural": "gauges", "singular": "gauge", "kind": "Gauge", "listKind": "GaugeList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let status = json!({"state": "Installed", "observedGeneration": 3,
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Done"}]});
    let gauge = json!({
        "apiVersion": format!("{group}/v1"), "kind": "Gauge",
        "metadata": {"name": "g1", "uid": "old-gauge", "resourceVersion": "1"},
        "spec": {"level": 7},
        "status": status,
    });
    let gauge_type = ResourceType {
        group: group.clone(),
        version: "v1".into(),
        kind: "Gauge".into(),
        plural: "gauges".into(),
        namespaced: false,
    };
    let archive = write_archive(
        dir.path(),
        this_cluster(&client).await,
        &[recreate(types::crd(), crd), recreate(gauge_type, gauge)],
    );
    let out = kubesweep(&["restore", utf8(&archive)]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));

    let gvk = GroupVersionKind::gvk(&group, "v1", "Gauge");
    let gauges: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "gauges"),
    );
    let restored = gauges.get("g1").await.expect("gauge restored");
    assert_eq!(restored.data["spec"], json!({"level": 7}));
    assert_eq!(restored.data["status"], status, "{restored:?}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds.delete(&crd_name, &DeleteParams::default()).await;
    for _ in 0..100 {
        if crds.get_opt(&crd_name).await.expect("get").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
