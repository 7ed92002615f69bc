//! What kubesweep does when it cannot see everything, against the real
//! control plane:
//! - a platform CRD whose instances cannot be listed (its conversion webhook
//!   is dead) is kept, not deleted with instances nobody backed up; its
//!   conversion webhook is neutralised, so the next run lists the instances
//!   and removes them and the CRD;
//! - an API group that fails discovery makes every custom-resource delete an
//!   Orphan delete (fail closed: an unseen object may depend on anything).
//!
//! The tests run whole-cluster plans and applies, so each takes the cluster lock.

mod common;

use common::*;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use serde_json::{Value, json};

/// A platform group (under kubesphere.io) only these tests use.
const GROUP: &str = "unlisted.kubesphere.io";
const GIZMOS: &str = "gizmos.unlisted.kubesphere.io";
const PLAIN: &str = "plains.unlisted.kubesphere.io";
/// A foreign aggregated API with no backend: discovery of its group fails.
const DEAD_API_SERVICE: &str = "v1.dead.unlisted-test.example.com";

fn crd(plural: &str, kind: &str) -> CustomResourceDefinition {
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    };
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {"group": GROUP, "scope": "Cluster",
                 "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
                 "versions": [version("v1", true), version("v2", false)]}
    }))
    .expect("crd")
}

fn instances(client: &Client, plural: &str, kind: &str, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, version, kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..100 {
        let crd = crds.get(name).await.expect("crd");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} not established");
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..600 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} still present");
}

fn paged() -> ListParams {
    ListParams::default().limit(100)
}

/// Removes what an earlier, failed run of these tests may have left.
async fn clean(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [GIZMOS, PLAIN] {
        if let Some(crd) = crds.get_opt(name).await.expect("get crd") {
            // A dead conversion webhook would keep it terminating.
            let _ = crds
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"spec": {"conversion": {"strategy": "None", "webhook": null}}}),
                    ),
                )
                .await;
            let api = instances(
                client,
                crd.spec.names.plural.as_str(),
                &crd.spec.names.kind,
                "v1",
            );
            for o in api
                .list(&paged())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let _ = api
                    .patch(
                        &o.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
            let _ = crds.delete(name, &DeleteParams::default()).await;
            wait_gone(&crds, name).await;
        }
    }
    let api_services: Api<APIService> = Api::all(client.clone());
    let _ = api_services
        .delete(DEAD_API_SERVICE, &DeleteParams::default())
        .await;
}

fn plan_json() -> Value {
    let out = kubesweep(&["plan", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    serde_json::from_slice(&out.stdout).expect("plan JSON")
}

fn actions_on<'a>(plan: &'a Value, name: &str) -> Vec<(&'a str, &'a Value)> {
    plan["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |a| (p["id"].as_str().unwrap_or_default(), a))
        })
        .filter(|(_, a)| a["target"]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_crd_whose_instances_cannot_be_listed_is_kept_until_a_run_can_list_them() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    clean(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd("gizmos", "Gizmo"))
        .await
        .expect("create crd");
    wait_established(&crds, GIZMOS).await;
    let v1 = instances(&client, "gizmos", "Gizmo", "v1");
    let gizmo: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "Gizmo",
        "metadata": {"name": "g1", "finalizers": ["kubesphere.io/gizmo-protection"]},
        "spec": {"size": 1}
    }))
    .expect("gizmo");
    let gizmo = v1
        .create(&PostParams::default(), &gizmo)
        .await
        .expect("create gizmo");
    // Stored as v1; now v2 is the storage version and conversion goes
    // through a webhook whose service does not exist: v2 lists fail.
    crds.patch(
        GIZMOS,
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "replace", "path": "/spec/versions/0/storage", "value": false},
                {"op": "replace", "path": "/spec/versions/1/storage", "value": true},
                {"op": "add", "path": "/spec/conversion", "value": {
                    "strategy": "Webhook",
                    "webhook": {"conversionReviewVersions": ["v1"],
                                "clientConfig": {"service": {"namespace": "unlisted-gone", "name": "conversion", "path": "/convert", "port": 443}}}}}
            ]))
            .expect("patch"),
        ),
    )
    .await
    .expect("break conversion");
    let v2 = instances(&client, "gizmos", "Gizmo", "v2");
    let mut failing = false;
    for _ in 0..50 {
        // Paged, as kubesweep lists: an unpaged LIST is served by the watch
        // cache, which cannot fill, and hangs instead of failing.
        if v2.list(&paged()).await.is_err() {
            failing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failing,
        "the dead conversion webhook should make v2 lists fail"
    );
    let crd_before = crds.get(GIZMOS).await.expect("crd");

    // The plan keeps the CRD, says why, and neutralises its conversion webhook.
    let plan = plan_json();
    let on_crd = actions_on(&plan, GIZMOS);
    assert_eq!(
        on_crd.iter().map(|(phase, _)| *phase).collect::<Vec<_>>(),
        vec!["crd-conversion"],
        "{on_crd:?}"
    );
    let findings = plan["findings"].to_string();
    assert!(
        findings.contains(&format!("platform CRD {GIZMOS}"))
            && findings.contains("run kubesweep again"),
        "{findings}"
    );

    // First run: the CRD and its instance stay, the conversion is off.
    let out = kubesweep(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let crd_after = crds.get(GIZMOS).await.expect("the CRD is kept");
    assert_eq!(crd_after.uid(), crd_before.uid());
    assert!(crd_after.metadata.deletion_timestamp.is_none());
    assert_eq!(
        crd_after
            .spec
            .conversion
            .as_ref()
            .map(|c| c.strategy.as_str()),
        Some("None")
    );
    let still = v1.get("g1").await.expect("the instance is kept");
    assert_eq!(still.uid(), gizmo.uid());
    assert_eq!(still.finalizers(), gizmo.finalizers());

    // Second run: now listable, so backed up, freed and removed with the CRD.
    let out = kubesweep(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(crds.get_opt(GIZMOS).await.expect("get").is_none());
    clean(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_fails_discovery_makes_every_custom_resource_delete_orphan() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    clean(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd("plains", "Plain"))
        .await
        .expect("create crd");
    wait_established(&crds, PLAIN).await;
    let api = instances(&client, "plains", "Plain", "v1");
    let plain: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "Plain", "metadata": {"name": "p1"}
    }))
    .expect("plain");
    api.create(&PostParams::default(), &plain)
        .await
        .expect("create plain");
    let propagation = |plan: &Value| {
        actions_on(plan, "p1")
            .first()
            .map(|(_, a)| a["operation"]["propagation"].clone())
    };
    // Nothing depends on it, everything was seen: left to its CRD's
    // deletion (the API server's delete is a Background one).
    let first = plan_json();
    assert_eq!(
        actions_on(&first, "p1")
            .first()
            .map(|(_, a)| a["operation"]["type"].clone()),
        Some(json!("removedWithCrd"))
    );

    // A foreign group fails discovery: an unseen object may name it as owner.
    let api_services: Api<APIService> = Api::all(client.clone());
    let dead: APIService = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": DEAD_API_SERVICE},
        "spec": {"group": "dead.unlisted-test.example.com", "version": "v1",
                 "service": {"namespace": "unlisted-test-backend", "name": "api", "port": 443},
                 "groupPriorityMinimum": 100, "versionPriority": 10, "insecureSkipTLSVerify": true}
    }))
    .expect("apiservice");
    api_services
        .create(&PostParams::default(), &dead)
        .await
        .expect("create apiservice");
    let mut seen = None;
    for _ in 0..50 {
        let plan = plan_json();
        let unavailable = plan["findings"]
            .to_string()
            .contains("dead.unlisted-test.example.com");
        if unavailable {
            seen = Some(plan);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = api_services
        .delete(DEAD_API_SERVICE, &DeleteParams::default())
        .await;
    let plan = seen.expect("discovery reports the dead group");
    assert_eq!(
        propagation(&plan),
        Some(json!("Orphan")),
        "{}",
        plan["findings"]
    );
    clean(&client).await;
}
