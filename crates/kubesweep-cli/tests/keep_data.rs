//! `--keep-data` against the real control plane, on the seeded KubeSphere 4.1
//! footprint: without it the plan names the extension's PersistentVolumeClaim
//! among the data it destroys; with it the extension namespace and its claim
//! survive (same UIDs), everything else of the platform goes, including the
//! Helm executor's leftovers inside the kept namespace, and verify passes.
//!
//! Uses the footprint's fixed names, so it takes the cluster lock.

mod common;

use common::*;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::Api;
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use kubesweep_fixtures::kubesphere_v4::{
    EXECUTOR_JOB, EXTENSION, EXTENSION_CLAIM, EXTENSION_NAMESPACE,
};
use kubesweep_fixtures::verdict::is_platform_key;
use kubesweep_fixtures::{Footprint, Role, snapshot};

/// The shared CRD the built-in profile keeps unless `--include-shared-crds`.
const SHARED_CRD: &str = "applications.app.k8s.io";

/// UID of the extension's claim, `None` when it is gone.
async fn claim_uid(client: &Client) -> Option<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), EXTENSION_NAMESPACE);
    claims
        .get_opt(EXTENSION_CLAIM)
        .await
        .expect("read the claim")
        .and_then(|c| c.metadata.uid)
}

/// Whether a seeded platform object is one `--keep-data` keeps: the
/// extension namespace, its claim, and the shared CRD kept by default.
fn kept_for_data(object: &kubesweep_fixtures::SeededObject) -> bool {
    let key = &object.key;
    (key.kind == "Namespace" && key.name == EXTENSION_NAMESPACE)
        || (key.kind == "PersistentVolumeClaim" && key.name == EXTENSION_CLAIM)
        || key.name == SHARED_CRD
}

/// The executor's leftovers seeded in the extension namespace.
fn executor_leftovers(footprint: &Footprint) -> Vec<String> {
    let leftovers: Vec<String> = footprint
        .with_role(Role::Platform)
        .filter(|o| o.key.namespace.as_deref() == Some(EXTENSION_NAMESPACE))
        .filter(|o| {
            let name = o.key.name.as_str();
            name.starts_with(EXECUTOR_JOB)
                || name == format!("helm-executor.{EXTENSION}")
                || name == format!("kubesphere:{EXTENSION}:helm-executor")
        })
        .map(|o| o.key.to_string())
        .collect();
    // Job, ConfigMap, ServiceAccount, Role, RoleBinding.
    assert_eq!(leftovers.len(), 5, "{leftovers:?}");
    leftovers
}

#[tokio::test]
async fn keep_data_keeps_the_extension_namespace_with_its_claim_and_removes_the_rest() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint)
        .await
        .expect("snapshot before");
    let uid_before = claim_uid(&client).await.expect("the claim is seeded");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_uid_before = namespaces
        .get(EXTENSION_NAMESPACE)
        .await
        .expect("extension namespace")
        .metadata
        .uid;

    // Without --keep-data the plan calls out the claim the namespace takes along.
    let plan = kubesweep(&["plan", "-o", "json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let hazard = plan["data_hazards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["target"]["name"] == EXTENSION_NAMESPACE)
        .and_then(|h| h["description"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        hazard.contains(EXTENSION_CLAIM) && hazard.contains("1 PersistentVolumeClaim"),
        "{hazard}"
    );

    let apply = kubesweep(&["apply", "--yes", "--keep-data"]);
    assert_applied_clean(&apply);
    // Give the garbage collector time to act on deleted owners, if it could.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The namespace and its claim are the same objects as before.
    let ns = namespaces
        .get(EXTENSION_NAMESPACE)
        .await
        .expect("the extension namespace is kept");
    assert!(ns.metadata.deletion_timestamp.is_none(), "{ns:?}");
    assert_eq!(ns.metadata.uid, ns_uid_before);
    for key in ns.labels().keys().chain(ns.annotations().keys()) {
        assert!(
            !is_platform_key(key),
            "the kept namespace still carries {key}"
        );
    }
    assert_eq!(claim_uid(&client).await, Some(uid_before));

    // Everything else of the platform is gone, the executor's leftovers in
    // the kept namespace included.
    let state = kubesweep_fixtures::footprint_state(&client, &footprint)
        .await
        .expect("read the footprint state");
    for object in footprint.with_role(Role::Platform) {
        let key = object.key.to_string();
        if kept_for_data(object) {
            assert!(state[&key].is_some(), "{key} must be kept");
        } else {
            assert!(
                state[&key].is_none(),
                "platform object {key} is still there"
            );
        }
    }
    for key in executor_leftovers(&footprint) {
        assert!(
            state[&key].is_none(),
            "executor leftover {key} is still there"
        );
    }
    assert_verdict_clean(&client, &footprint, &before).await;

    let verify = kubesweep(&["verify", "--keep-data"]);
    assert_eq!(verify.status.code(), Some(0), "{}", explain(&verify));
    reset(&client, &footprint).await;
}
