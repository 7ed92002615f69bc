//! The `kubesweep` binary against the real control plane, on the seeded
//! KubeSphere 3.4 (ks-installer) footprint: the built-in profile claims 3.x
//! too, so plan → apply must remove every 3.x leftover, keep the project
//! namespace its Workspace owned, and leave the shared Prometheus Operator CRD
//! and its foreign instance alone.
//!
//! Uses the footprint's fixed names, so it takes the cluster lock.

mod common;

use common::*;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kubesweep_fixtures::harness::{
    TeardownOnPanic, cluster_lock, kubeconfig_path, shared_client, teardown_on_panic,
};
use kubesweep_fixtures::kubesphere_v3::{PROJECT, SHARED_CRD};
use kubesweep_fixtures::{Footprint, Profile, Role, SeedOptions, seed, snapshot, teardown};

fn options() -> SeedOptions {
    SeedOptions {
        profile: Profile::KubesphereV3,
        ..SeedOptions::default()
    }
}

/// Seeds the 3.x footprint, torn down again should the test panic.
async fn seeded(client: &Client) -> (Footprint, TeardownOnPanic) {
    let footprint = seed(client, &options())
        .await
        .expect("seed the 3.x footprint")
        .footprint;
    let guard = teardown_on_panic(&footprint, &options());
    (footprint, guard)
}

#[tokio::test]
async fn cli_removes_the_3x_footprint_keeping_projects_and_shared_crds() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = PathBuf::from(kubeconfig_path());
    let (footprint, _teardown) = seeded(&client).await;
    let before = snapshot(&client, &footprint)
        .await
        .expect("snapshot before");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");

    let plan = kubesweep_as(
        &["plan", "-o", plan_file.to_str().expect("utf-8")],
        &kubeconfig,
    );
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let apply = kubesweep_as(
        &["apply", plan_file.to_str().expect("utf-8"), "--yes"],
        &kubeconfig,
    );
    assert_applied_clean(&apply);

    // The garbage collector acts asynchronously on a deleted Workspace: give it
    // time to take the project namespace with it, if it could, before judging.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let state = kubesweep_fixtures::footprint_state(&client, &footprint)
        .await
        .expect("read the footprint state");
    let left: Vec<String> = footprint
        .with_role(Role::Platform)
        .map(|o| o.key.to_string())
        .filter(|key| state[key].is_some())
        .collect();
    assert!(left.is_empty(), "platform objects still there: {left:?}");

    assert_verdict_clean(&client, &footprint, &before).await;

    // The verdict also holds the shared CRD and its foreign instance
    // byte-identical (role Foreign); say so plainly should that ever break.
    let shared_key = format!("CustomResourceDefinition.apiextensions.k8s.io {SHARED_CRD}");
    assert!(
        state[&shared_key].is_some(),
        "the shared CRD is kept by default"
    );
    let foreign_rule = footprint
        .find("PrometheusRule", Some("acme-apps"), "acme-rules")
        .expect("foreign PrometheusRule in the footprint");
    assert!(state[&foreign_rule.key.to_string()].is_some());

    // The verdict allows the removal of KubeSphere keys; prove they are really
    // gone, and that the Workspace-owned project survived.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kept: Vec<&str> = footprint
        .system_namespaces()
        .into_iter()
        .chain(footprint.user_namespaces())
        .collect();
    assert!(kept.contains(&PROJECT));
    for name in kept {
        assert_namespace_kept_clean(&namespaces, name).await;
    }

    teardown(&client, &footprint, &options())
        .await
        .expect("teardown");
}
