//! The namespace fast path against the real control plane (issue 13): a
//! platform namespace kubesweep deletes is emptied by kubesweep itself,
//! proven empty and finalized, and one it cannot prove empty (an object
//! held by another program's finalizer) is left to the namespace
//! controller with that object untouched but for its deletion.
//!
//! The way each namespace went is read from the run's audit record (its
//! `namespace-path` lines and the fast path's own deletions, with UIDs),
//! never from timing. Whole-cluster `apply`: the tests take the cluster lock.

mod common;

use common::*;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client, unique_name};
use serde_json::{Value, json};

/// The label that, with the `extension-` prefix, proves a namespace the platform's.
const EXTENSION_LABEL: &str = "kubesphere.io/extension-ref";
/// A namespaced CRD of the test's own (not the platform's).
const CRD: &str = "fastwidgets.fastpath.example.com";

async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("test object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create test object")
}

async fn platform_namespace(client: &Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(
        &namespaces,
        json!({"metadata": {"name": name, "labels": {EXTENSION_LABEL: "test"}}}),
    )
    .await;
    name
}

fn widgets(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("fastpath.example.com", "v1", "FastWidget");
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, "fastwidgets"),
    )
}

/// Creates the test's namespaced CRD and waits until it is served.
async fn ensure_widget_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds.get_opt(CRD).await.expect("read crd").is_none() {
        create(
            &crds,
            json!({
                "metadata": {"name": CRD},
                "spec": {
                    "group": "fastpath.example.com",
                    "scope": "Namespaced",
                    "names": {"plural": "fastwidgets", "singular": "fastwidget", "kind": "FastWidget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
                }
            }),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(CRD).await.expect("read crd");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CRD} not established"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pod no node will ever run (the cluster has none): Pending forever.
async fn unscheduled_pod(client: &Client, namespace: &str, name: &str) -> Pod {
    // The ServiceAccount admission plugin refuses pods until the
    // controller manager has made the namespace's `default` account.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while accounts
        .get_opt("default")
        .await
        .expect("read sa")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no default ServiceAccount in {namespace}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    create(
        &pods,
        json!({"metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "registry.example.com/none:1"}]}}),
    )
    .await
}

/// The lines of the audit record(s) under `dir`.
fn audit_lines(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("backup dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("read audit record");
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("audit line")),
            );
        }
    }
    out
}

/// The `namespace-path` line of `namespace` in the audit record.
fn path_of(lines: &[Value], namespace: &str) -> Value {
    lines
        .iter()
        .find(|l| l["event"] == "namespace-path" && l["namespace"] == namespace)
        .cloned()
        .unwrap_or_else(|| panic!("no namespace-path line for {namespace} in {lines:#?}"))
}

/// UIDs the fast path deleted (its own writes in the audit record).
fn fast_path_deleted(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["operation"] == "delete (namespace fast path)" && l["result"] == "done")
        .filter_map(|l| l["uid"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_platform_namespace_is_emptied_proven_empty_and_finalized_by_kubesweep() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    ensure_widget_crd(&client).await;
    let ns = platform_namespace(&client, "extension-fast").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let cm = create(&configmaps, json!({"metadata": {"name": "settings"}})).await;
    let secret = create(
        &secrets,
        json!({"metadata": {"name": "token"}, "stringData": {"k": "v"}}),
    )
    .await;
    let pod = unscheduled_pod(&client, &ns, "never-runs").await;
    // A custom resource held by the platform's finalizer: the plan strips it.
    let widget = create(
        &widgets(&client, &ns),
        json!({"apiVersion": "fastpath.example.com/v1", "kind": "FastWidget",
               "metadata": {"name": "held-by-the-platform", "finalizers": ["kubesphere.io/test-hold"]}}),
    )
    .await;

    let dir = tempfile::tempdir().expect("backup dir");
    let apply = kubesweep(&[
        "apply",
        "--yes",
        "--backup-dir",
        utf8(dir.path()),
        "--wait-timeout",
        "60",
    ]);
    assert_applied_clean(&apply);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&ns).await.expect("read").is_none(),
        "{ns} should be gone\n{}",
        explain(&apply)
    );
    let lines = audit_lines(dir.path());
    let path = path_of(&lines, &ns);
    assert_eq!(path["way"], "fast", "{path:#}\n{}", explain(&apply));
    // kubesweep itself deleted the namespace's content, each by its UID
    // (the widget went earlier, with the custom resources).
    let deleted = fast_path_deleted(&lines);
    for (what, uid) in [
        ("configmap", cm.uid()),
        ("secret", secret.uid()),
        ("pod", pod.uid()),
    ] {
        let uid = uid.expect("uid");
        assert!(
            deleted.contains(&uid),
            "{what} {uid} not deleted by the fast path: {lines:#?}"
        );
    }
    assert!(
        widgets(&client, &ns)
            .get_opt("held-by-the-platform")
            .await
            .map_or(true, |w| w.is_none()),
        "widget {:?} left",
        widget.uid()
    );

    // The comparison run: the controller path still converges the same way.
    let other = platform_namespace(&client, "extension-slow").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &other);
    create(&configmaps, json!({"metadata": {"name": "settings"}})).await;
    let dir = tempfile::tempdir().expect("backup dir");
    let apply = kubesweep(&[
        "apply",
        "--yes",
        "--backup-dir",
        utf8(dir.path()),
        "--wait-timeout",
        "120",
        "--namespace-wait",
        "controller",
    ]);
    assert_applied_clean(&apply);
    assert!(namespaces.get_opt(&other).await.expect("read").is_none());
    let lines = audit_lines(dir.path());
    assert!(
        !lines.iter().any(|l| l["event"] == "namespace-path"),
        "{lines:#?}"
    );
    assert!(fast_path_deleted(&lines).is_empty(), "{lines:#?}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds.delete(CRD, &DeleteParams::default()).await;
}

#[tokio::test]
async fn an_object_held_by_another_programs_finalizer_leaves_the_namespace_to_the_controller() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let ns = platform_namespace(&client, "extension-foreign").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let held = create(
        &configmaps,
        json!({"metadata": {"name": "held", "finalizers": ["acme.example.com/hold"]}}),
    )
    .await;

    let dir = tempfile::tempdir().expect("backup dir");
    let apply = kubesweep(&[
        "apply",
        "--yes",
        "--backup-dir",
        utf8(dir.path()),
        "--wait-timeout",
        "5",
    ]);
    // The namespace stays Terminating: the run ends non-zero and says why.
    assert_eq!(apply.status.code(), Some(1), "{}", explain(&apply));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = namespaces
        .get_opt(&ns)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{ns} was finalized over a held object\n{}", explain(&apply)));
    assert!(namespace.metadata.deletion_timestamp.is_some());
    assert!(
        namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == "kubernetes")),
        "{namespace:?}"
    );
    // The object is there with its UID and its finalizer: never stripped.
    let now = configmaps.get("held").await.expect("the held object stays");
    assert_eq!(now.metadata.uid, held.metadata.uid);
    assert_eq!(now.finalizers(), ["acme.example.com/hold".to_owned()]);
    // The record names the way and the object that holds the namespace.
    let lines = audit_lines(dir.path());
    let path = path_of(&lines, &ns);
    assert_eq!(path["way"], "controller", "{path:#}");
    let detail = path["message"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "ConfigMap {ns}/held (finalizers: acme.example.com/hold)"
        )),
        "{detail}"
    );
    assert!(
        stderr(&apply).contains(&format!(
            "ConfigMap {ns}/held (finalizers: acme.example.com/hold)"
        )),
        "{}",
        explain(&apply)
    );

    // Its owner lets go; the namespace controller then finishes.
    configmaps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release the object");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while namespaces.get_opt(&ns).await.expect("read").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{ns} never went");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
