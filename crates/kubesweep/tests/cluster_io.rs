//! Integration tests of the cluster I/O layer against the real control plane
//! (`KUBESWEEP_TEST_KUBECONFIG`): discovery, paging, UID-bound deletes,
//! metadata removal by value under concurrent writers, Orphan deletes,
//! permission checks and a whole executor run. Every test isolates itself
//! with unique namespaces and a unique CRD group; tests that break discovery
//! for everyone take the cluster lock.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kubesweep::discover;
use kubesweep::execute::{self, ExecuteOptions, NoProgress, Outcome, Removal};
use kubesweep::inventory::{ClusterIdentity, types};
use kubesweep::plan::{
    Action, Operation, PLAN_SCHEMA_VERSION, Phase, PhaseId, Plan, PlanCounts, PlanOptions,
    Propagation,
};
use kubesweep::preflight::{self, Permission};
use kubesweep::resource::{ObjectRef, ResourceType};
use kubesweep::retry::RetryPolicy;
use kubesweep_fixtures::harness::{cluster_lock, cluster_share, shared_config, unique_name};
use serde_json::json;

async fn client() -> Client {
    kubesweep::cluster::client_from_config(shared_config().await).expect("client")
}

async fn identity(client: &Client) -> ClusterIdentity {
    let ns: Namespace = Api::all(client.clone())
        .get("kube-system")
        .await
        .expect("kube-system");
    ClusterIdentity {
        kube_system_uid: ns.metadata.uid.unwrap(),
        server: String::new(),
        context: None,
    }
}

async fn create_namespace(client: &Client, name: &str) -> Namespace {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace")
}

async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn configmap_type() -> ResourceType {
    ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
        namespaced: true,
    }
}

fn object_ref(rt: &ResourceType, object: &DynamicObject) -> ObjectRef {
    ObjectRef::from_object(rt, object).expect("stored object has uid and resourceVersion")
}

async fn create_configmap(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    finalizers: &[&str],
) -> DynamicObject {
    let api = discover::dynamic_api(client, &configmap_type(), Some(ns));
    let cm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "finalizers": finalizers,
        },
        "data": {"k": "v"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap")
}

/// Removes finalizers so a test's namespace can go.
async fn clear_finalizers(client: &Client, ns: &str, name: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let _ = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

fn single_action(target: ObjectRef, operation: Operation) -> Action {
    Action {
        target,
        operation,
        reason: "test".into(),
        destroys_data: false,
    }
}

/// A namespaced test CRD in a group of its own.
async fn create_test_crd(client: &Client, group: &str) -> ResourceType {
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    let api = discover::dynamic_api(client, &types::crd(), None);
    api.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    let name = format!("widgets.{group}");
    for _ in 0..100 {
        let crd = api.get(&name).await.expect("get CRD");
        let established = crd
            .data
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ResourceType {
        group: group.into(),
        version: "v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
        namespaced: true,
    }
}

async fn delete_crd(client: &Client, group: &str) {
    let api = discover::dynamic_api(client, &types::crd(), None);
    let _ = api
        .delete(&format!("widgets.{group}"), &DeleteParams::default())
        .await;
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // the harness lock is a std Mutex by design: it serialises whole tests
async fn discovery_survives_a_broken_aggregated_apiservice() {
    let _lock = cluster_lock();
    let client = client().await;
    let group = format!("{}.test.kubesweep.dev", unique_name("broken"));
    let name = format!("v1.{group}");
    let apiservices = discover::dynamic_api(&client, &types::api_service(), None);
    let apiservice: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name},
        "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "insecureSkipTLSVerify": true,
                 "service": {"namespace": "default", "name": "kubesweep-missing-backend", "port": 443}}
    }))
    .unwrap();
    apiservices
        .create(&PostParams::default(), &apiservice)
        .await
        .expect("create APIService");

    // The aggregator publishes the group in /apis shortly after registration.
    let mut catalog = discover::discover_api(&client)
        .await
        .expect("discovery must not fail");
    for _ in 0..50 {
        if catalog
            .broken
            .iter()
            .any(|b| b.group_version == format!("{group}/v1"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        catalog = discover::discover_api(&client)
            .await
            .expect("discovery must not fail");
    }
    let _ = apiservices.delete(&name, &DeleteParams::default()).await;

    let broken = catalog
        .broken
        .iter()
        .find(|b| b.group_version == format!("{group}/v1"))
        .expect("broken group reported");
    assert_eq!(broken.api_service_name(), name);
    assert!(
        catalog.find("", "namespaces").is_some(),
        "core group still discovered"
    );
    assert!(
        catalog.find("apps", "deployments").is_some(),
        "other groups still discovered"
    );
    assert!(
        catalog
            .find("apiextensions.k8s.io", "customresourcedefinitions")
            .is_some()
    );
}

#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn profile_discovery_reports_a_broken_group_as_an_issue() {
    let _lock = cluster_lock();
    let client = client().await;
    let group = format!("{}.test.kubesweep.dev", unique_name("broken"));
    let name = format!("v1.{group}");
    let apiservices = discover::dynamic_api(&client, &types::api_service(), None);
    let apiservice: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name},
        "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "insecureSkipTLSVerify": true,
                 "service": {"namespace": "default", "name": "kubesweep-missing-backend", "port": 443}}
    }))
    .unwrap();
    apiservices
        .create(&PostParams::default(), &apiservice)
        .await
        .expect("create APIService");
    let profile = kubesweep::profile::Profile::builtin("kubesphere").expect("builtin profile");
    let cluster = identity(&client).await;
    let mut found = false;
    let mut inventory = None;
    for _ in 0..50 {
        let inv = discover::discover(&client, &profile, &cluster)
            .await
            .expect("discovery must not fail");
        found = inv.issues.iter().any(|i| {
            matches!(i, kubesweep::inventory::DiscoveryIssue::ApiGroupUnavailable { group_version, .. } if *group_version == format!("{group}/v1"))
        });
        inventory = Some(inv);
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = apiservices.delete(&name, &DeleteParams::default()).await;
    let inventory = inventory.unwrap();
    assert!(found, "issues: {:?}", inventory.issues);
    assert!(
        inventory
            .namespaces
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("kube-system"))
    );
    assert!(
        inventory
            .api_services
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some(name.as_str()))
    );
}

#[tokio::test]
async fn paged_list_returns_every_object_beyond_one_page() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("paging");
    create_namespace(&client, &ns).await;
    let count = 520;
    let api = discover::dynamic_api(&client, &configmap_type(), Some(&ns));
    let created: Vec<()> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let ns = ns.clone();
            async move {
                let cm: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}"), "namespace": ns, "labels": {"batch": "paging"}}
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.expect("create");
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(created.len(), count);

    let all = discover::list_all(&client, &configmap_type(), Some(&ns), Some("batch=paging"))
        .await
        .expect("list");
    let mut names: Vec<String> = all.iter().filter_map(|o| o.metadata.name.clone()).collect();
    names.sort();
    names.dedup();
    assert!(count > discover::PAGE_SIZE as usize);
    assert_eq!(names.len(), count, "every object exactly once across pages");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn delete_with_a_stale_uid_is_refused_and_the_recreated_object_survives() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("stale");
    create_namespace(&client, &ns).await;
    let rt = configmap_type();
    let original = create_configmap(&client, &ns, "victim", &[], &[]).await;
    let planned = object_ref(&rt, &original);
    let api = discover::dynamic_api(&client, &rt, Some(&ns));
    api.delete("victim", &DeleteParams::default())
        .await
        .expect("delete original");
    let recreated = create_configmap(&client, &ns, "victim", &[], &[]).await;
    assert_ne!(recreated.metadata.uid, original.metadata.uid);

    let action = single_action(
        planned.clone(),
        Operation::Delete {
            propagation: Propagation::Background,
        },
    );
    let outcome = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    assert!(
        matches!(&outcome, Outcome::SkippedStale { found_uid } if Some(found_uid) == recreated.metadata.uid.as_ref()),
        "{outcome:?}"
    );
    let survivor = api.get("victim").await.expect("re-created object survives");
    assert_eq!(survivor.metadata.uid, recreated.metadata.uid);

    // The same action bound to the right UID deletes; repeating it is a no-op.
    let current = single_action(
        object_ref(&rt, &survivor),
        Operation::Delete {
            propagation: Propagation::Background,
        },
    );
    assert_eq!(
        execute::run_single(&client, &current, &RetryPolicy::standard(), false).await,
        Outcome::Done { detail: None }
    );
    assert_eq!(
        execute::run_single(&client, &current, &RetryPolicy::standard(), false).await,
        Outcome::AlreadyGone
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn metadata_strip_removes_only_the_named_items_and_keeps_foreign_ones() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("strip");
    create_namespace(&client, &ns).await;
    let rt = configmap_type();
    let cm = create_configmap(
        &client,
        &ns,
        "kept",
        &[("kubesphere.io/workspace", "ws"), ("team", "a")],
        &[
            "foreign.io/keep",
            "kubesphere.io/cascading-deletion",
            "other.io/too",
        ],
    )
    .await;
    let action = single_action(
        object_ref(&rt, &cm),
        Operation::StripMetadata {
            labels: vec!["kubesphere.io/workspace".into()],
            annotations: vec!["kubesphere.io/creator".into()],
            finalizers: vec!["kubesphere.io/cascading-deletion".into()],
            owner_reference_uids: vec![],
        },
    );
    let outcome = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    assert_eq!(outcome, Outcome::Done { detail: None });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let after = api.get("kept").await.expect("still there");
    assert_eq!(
        after.metadata.labels.unwrap(),
        BTreeMap::from([("team".to_string(), "a".to_string())])
    );
    assert_eq!(
        after.metadata.finalizers.unwrap(),
        vec!["foreign.io/keep".to_string(), "other.io/too".to_string()]
    );
    assert_eq!(after.data.unwrap().get("k").map(String::as_str), Some("v"));

    // Running it again changes nothing.
    let again = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    assert!(
        matches!(again, Outcome::Done { detail: Some(_) }),
        "{again:?}"
    );
    clear_finalizers(&client, &ns, "kept").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_patch_computed_from_a_stale_read_is_rejected_by_the_server() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("stalepatch");
    create_namespace(&client, &ns).await;
    let cm = create_configmap(&client, &ns, "c", &[], &["a.io/x", "kubesphere.io/y"]).await;
    let api = discover::dynamic_api(&client, &configmap_type(), Some(&ns));
    // Someone inserts a finalizer in front: index 1 is no longer ours.
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "add", "path": "/metadata/finalizers/0", "value": "b.io/new"}
            ]))
            .unwrap(),
        ),
    )
    .await
    .expect("concurrent writer");
    let ops = execute::removal_patch(
        &cm,
        &Removal {
            finalizers: vec!["kubesphere.io/y".into()],
            ..Removal::default()
        },
    )
    .unwrap();
    let err = api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(serde_json::Value::Array(ops)).unwrap()),
        )
        .await
        .expect_err("stale patch must be rejected");
    assert_eq!(kubesweep::retry::status_code(&err), Some(422), "{err}");
    let now = api.get("c").await.unwrap();
    assert_eq!(
        now.metadata.finalizers.unwrap(),
        vec!["b.io/new", "a.io/x", "kubesphere.io/y"]
    );
    clear_finalizers(&client, &ns, "c").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn metadata_strip_under_concurrent_writers_re_reads_and_removes_only_its_items() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("race");
    create_namespace(&client, &ns).await;
    let rt = configmap_type();
    let cm = create_configmap(
        &client,
        &ns,
        "busy",
        &[("kubesphere.io/managed", "true")],
        &["kubesphere.io/a", "foreign.io/a"],
    )
    .await;
    let planned = object_ref(&rt, &cm);

    // A writer that keeps moving resourceVersion and shifting finalizer indices.
    let writer = {
        let api = discover::dynamic_api(&client, &rt, Some(&ns));
        tokio::spawn(async move {
            for i in 0..40 {
                let op = json!([{"op": "add", "path": "/metadata/finalizers/0", "value": format!("writer.io/f{i}")}]);
                let _ = api
                    .patch(
                        "busy",
                        &PatchParams::default(),
                        &Patch::Json::<()>(serde_json::from_value(op).unwrap()),
                    )
                    .await;
            }
        })
    };
    let action = single_action(
        planned,
        Operation::StripMetadata {
            labels: vec!["kubesphere.io/managed".into()],
            annotations: vec![],
            finalizers: vec!["kubesphere.io/a".into()],
            owner_reference_uids: vec![],
        },
    );
    let outcome = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    writer.await.unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let after = api.get("busy").await.unwrap();
    let finalizers = after.metadata.finalizers.unwrap();
    assert!(
        !finalizers.contains(&"kubesphere.io/a".to_string()),
        "{finalizers:?}"
    );
    assert!(
        finalizers.contains(&"foreign.io/a".to_string()),
        "{finalizers:?}"
    );
    let writers = finalizers
        .iter()
        .filter(|f| f.starts_with("writer.io/"))
        .count();
    assert_eq!(
        writers, 40,
        "every concurrent writer's finalizer kept: {finalizers:?}"
    );
    assert!(
        !after
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("kubesphere.io/managed")
    );
    clear_finalizers(&client, &ns, "busy").await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn custom_resource_with_finalizer_deleted_with_orphan_leaves_its_dependent() {
    let _share = cluster_share();
    let client = client().await;
    let group = format!("{}.test.kubesweep.dev", unique_name("orphan"));
    let ns = unique_name("orphan");
    create_namespace(&client, &ns).await;
    let widget_type = create_test_crd(&client, &group).await;
    let widgets = discover::dynamic_api(&client, &widget_type, Some(&ns));
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "owner", "namespace": ns, "finalizers": ["kubesphere.io/test-protection"]},
        "spec": {"size": 1}
    }))
    .unwrap();
    let widget = widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create widget");
    let owner_uid = widget.metadata.uid.clone().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let dependent = ConfigMap {
        metadata: ObjectMeta {
            name: Some("dependent".into()),
            owner_references: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: format!("{group}/v1"),
                    kind: "Widget".into(),
                    name: "owner".into(),
                    uid: owner_uid.clone(),
                    block_owner_deletion: Some(true),
                    controller: Some(true),
                },
            ]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &dependent)
        .await
        .expect("create dependent");

    let target = object_ref(&widget_type, &widget);
    let action = single_action(
        target.clone(),
        Operation::StripFinalizersThenDelete {
            finalizers: vec!["kubesphere.io/test-protection".into()],
            propagation: Propagation::Orphan,
        },
    );
    let outcome = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    assert_eq!(outcome, Outcome::Done { detail: None });
    let options = ExecuteOptions {
        wait_timeout: Duration::from_secs(60),
        ..ExecuteOptions::default()
    };
    let wait = execute::wait_for_deletion(&client, vec![target], &options).await;
    assert!(!wait.timed_out, "{wait:?}");

    let dependent = cms
        .get("dependent")
        .await
        .expect("dependent survives an Orphan delete");
    let owners = dependent.metadata.owner_references.unwrap_or_default();
    assert!(
        owners.iter().all(|o| o.uid != owner_uid),
        "GC orphaned the dependent: {owners:?}"
    );
    delete_namespace(&client, &ns).await;
    delete_crd(&client, &group).await;
}

/// A kubeconfig for the test cluster authenticating with a bearer token (the
/// public way to hand kube a token).
async fn token_kubeconfig(token: &str) -> String {
    let server = shared_config().await.cluster_url.to_string();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\ncurrent-context: test\n"
    )
}

#[tokio::test]
async fn connect_tells_rejected_from_insufficient_credentials() {
    let _share = cluster_share();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad-token");
    std::fs::write(&path, token_kubeconfig("not-a-valid-token").await).unwrap();
    let options = kubesweep::cluster::ConnectOptions {
        kubeconfig: Some(path),
        ..Default::default()
    };
    let err = kubesweep::cluster::connect(&options)
        .await
        .expect_err("401");
    assert!(
        matches!(err, kubesweep::cluster::ClusterError::Unauthorized { .. }),
        "{err}"
    );

    // A valid service account without RBAC may not read kube-system.
    let client = client().await;
    let ns = unique_name("noperm");
    create_namespace(&client, &ns).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("nobody".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &account)
        .await
        .expect("service account");
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request("nobody", &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let path = dir.path().join("no-rbac");
    std::fs::write(&path, token_kubeconfig(&token).await).unwrap();
    let options = kubesweep::cluster::ConnectOptions {
        kubeconfig: Some(path),
        context: Some("test".into()),
        ..Default::default()
    };
    let err = kubesweep::cluster::connect(&options)
        .await
        .expect_err("403");
    assert!(
        matches!(err, kubesweep::cluster::ClusterError::Forbidden { .. }),
        "{err}"
    );
    delete_namespace(&client, &ns).await;
}

/// A client authenticated as `system:serviceaccount:<ns>:<sa>` through a TokenRequest.
async fn service_account_client(client: &Client, ns: &str, sa: &str) -> Client {
    let config = service_account_config(client, ns, sa).await;
    kubesweep::cluster::client_from_config(config).expect("client")
}

/// Creates service account `sa` in `ns` and returns a client configuration
/// authenticating as it with a fresh token.
async fn service_account_config(client: &Client, ns: &str, sa: &str) -> kube::Config {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(sa.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &account)
        .await
        .expect("create service account");
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token
        .expect("token");
    let kubeconfig = token_kubeconfig(&token).await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config")
}

#[tokio::test]
async fn permission_check_reports_what_a_restricted_service_account_lacks() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("perm");
    create_namespace(&client, &ns).await;
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "read-configmaps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "sweeper".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let restricted = service_account_client(&client, &ns, "sweeper").await;

    let perm = |verb: &str, resource: &str, namespace: Option<&str>| Permission {
        verb: verb.into(),
        group: String::new(),
        resource: resource.into(),
        subresource: None,
        namespace: namespace.map(str::to_string),
    };
    let wanted = vec![
        perm("get", "configmaps", Some(&ns)),
        perm("list", "configmaps", Some(&ns)),
        perm("delete", "configmaps", Some(&ns)),
        perm("patch", "configmaps", Some(&ns)),
        perm("delete", "namespaces", None),
        Permission {
            subresource: Some("finalize".into()),
            ..perm("update", "namespaces", None)
        },
    ];
    let missing = preflight::missing_permissions(&restricted, &wanted)
        .await
        .expect("reviews");
    let missing: Vec<&Permission> = missing.iter().map(|m| &m.permission).collect();
    assert_eq!(missing.len(), 4, "{missing:?}");
    assert!(
        missing.contains(&&wanted[2])
            && missing.contains(&&wanted[3])
            && missing.contains(&&wanted[4])
            && missing.contains(&&wanted[5])
    );

    // The admin client lacks nothing.
    assert!(
        preflight::missing_permissions(&client, &wanted)
            .await
            .expect("reviews")
            .is_empty()
    );
    delete_namespace(&client, &ns).await;
}

fn plan_for(cluster: ClusterIdentity, phases: Vec<Phase>) -> Plan {
    Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        cluster,
        profile: "test".into(),
        kubesweep_version: "test".into(),
        options: PlanOptions::default(),
        counts: PlanCounts::compute(&phases, &[]),
        phases,
        findings: vec![],
        data_hazards: vec![],
    }
}

#[tokio::test]
async fn executor_runs_phases_in_order_waits_and_reports() {
    let _share = cluster_share();
    let client = client().await;
    let cluster = identity(&client).await;
    let group = format!("{}.test.kubesweep.dev", unique_name("exec"));
    let platform_ns = unique_name("exec-platform");
    let user_ns = unique_name("exec-user");
    create_namespace(&client, &platform_ns).await;
    create_namespace(&client, &user_ns).await;
    let ns_api = discover::dynamic_api(&client, &types::namespace(), None);
    ns_api
        .patch(
            &user_ns,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"kubesphere.io/workspace": "ws", "team": "x"}}}),
            ),
        )
        .await
        .expect("label user namespace");
    let user = ns_api.get(&user_ns).await.expect("user namespace");
    let widget_type = create_test_crd(&client, &group).await;
    let widgets = discover::dynamic_api(&client, &widget_type, Some(&platform_ns));
    let mut instance_actions = Vec::new();
    for i in 0..25 {
        let w: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": format!("w{i}"), "namespace": platform_ns, "finalizers": ["kubesphere.io/test-protection"]}
        }))
        .unwrap();
        let w = widgets
            .create(&PostParams::default(), &w)
            .await
            .expect("create widget");
        instance_actions.push(single_action(
            object_ref(&widget_type, &w),
            Operation::StripFinalizersThenDelete {
                finalizers: vec!["kubesphere.io/test-protection".into()],
                propagation: Propagation::Orphan,
            },
        ));
    }
    let crd = discover::dynamic_api(&client, &types::crd(), None)
        .get(&format!("widgets.{group}"))
        .await
        .unwrap();
    let platform = ns_api.get(&platform_ns).await.unwrap();
    let kube_system = ns_api.get("kube-system").await.unwrap();
    let phases = vec![
        Phase {
            id: PhaseId::KeptObjects,
            actions: vec![single_action(
                object_ref(&types::namespace(), &user),
                Operation::StripMetadata {
                    labels: vec!["kubesphere.io/workspace".into()],
                    annotations: vec![],
                    finalizers: vec![],
                    owner_reference_uids: vec![],
                },
            )],
        },
        Phase {
            id: PhaseId::CustomResources,
            actions: instance_actions,
        },
        Phase {
            id: PhaseId::Crds,
            actions: vec![single_action(
                object_ref(&types::crd(), &crd),
                Operation::Delete {
                    propagation: Propagation::Background,
                },
            )],
        },
        Phase {
            id: PhaseId::Namespaces,
            actions: vec![
                single_action(
                    object_ref(&types::namespace(), &platform),
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
                // Defence in depth: a plan that asks to delete kube-system is refused.
                single_action(
                    object_ref(&types::namespace(), &kube_system),
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ],
        },
    ];
    let plan = plan_for(cluster.clone(), phases);
    let options = ExecuteOptions {
        wait_timeout: Duration::from_secs(120),
        ..ExecuteOptions::default()
    };
    let report = execute::execute(&client, &plan, &options, &NoProgress)
        .await
        .expect("runs");

    assert_eq!(report.counts.total, 29);
    assert_eq!(report.counts.done, 28, "{report:#?}");
    assert_eq!(report.counts.skipped, 1, "kube-system refused");
    assert!(
        report
            .phases
            .iter()
            .filter_map(|p| p.wait.as_ref())
            .all(|w| !w.timed_out),
        "{report:#?}"
    );
    assert!(
        ns_api.get_opt(&platform_ns).await.unwrap().is_none(),
        "platform namespace gone"
    );
    assert!(ns_api.get_opt("kube-system").await.unwrap().is_some());
    let user_after = ns_api.get(&user_ns).await.expect("user namespace kept");
    let labels = user_after.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("kubesphere.io/workspace"));
    assert_eq!(labels.get("team").map(String::as_str), Some("x"));
    assert!(
        discover::dynamic_api(&client, &types::crd(), None)
            .get_opt(&format!("widgets.{group}"))
            .await
            .unwrap()
            .is_none()
    );

    // A plan for another cluster is refused before anything is touched.
    let foreign = plan_for(
        ClusterIdentity {
            kube_system_uid: "another-cluster".into(),
            ..cluster
        },
        vec![],
    );
    let err = execute::execute(&client, &foreign, &options, &NoProgress)
        .await
        .expect_err("wrong cluster");
    assert!(matches!(err, execute::ExecuteError::WrongCluster { .. }));
    delete_namespace(&client, &user_ns).await;
}

/// Polls a namespace until `condition_type` is True; returns the namespace.
async fn wait_for_namespace_condition(
    client: &Client,
    name: &str,
    condition_type: &str,
) -> DynamicObject {
    let api = discover::dynamic_api(client, &types::namespace(), None);
    for _ in 0..150 {
        let ns = api.get(name).await.expect("namespace");
        let set = ns
            .data
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == condition_type && c["status"] == "True")
            });
        if set {
            return ns;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("namespace {name} never got condition {condition_type}");
}

#[tokio::test]
async fn finalize_refuses_a_namespace_whose_content_remains() {
    let _share = cluster_share();
    let client = client().await;
    let name = unique_name("stuck-content");
    let ns = create_namespace(&client, &name).await;
    create_configmap(&client, &name, "held", &[], &["kubesweep.dev/hold"]).await;
    Api::<Namespace>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for_namespace_condition(&client, &name, "NamespaceFinalizersRemaining").await;

    let target = ObjectRef {
        resource: types::namespace(),
        namespace: None,
        name: name.clone(),
        uid: ns.metadata.uid.clone().unwrap(),
        resource_version: ns.metadata.resource_version.clone().unwrap(),
    };
    let action = single_action(target, Operation::FinalizeNamespaceIfStuck);
    let not_allowed = execute::run_single(&client, &action, &RetryPolicy::standard(), false).await;
    assert!(
        matches!(&not_allowed, Outcome::Skipped { reason } if reason.contains("does not allow")),
        "{not_allowed:?}"
    );
    // A failure (the run ends non-zero) that names what holds the namespace.
    let refused = execute::run_single(&client, &action, &RetryPolicy::standard(), true).await;
    assert!(
        matches!(&refused, Outcome::Failed { message } if message.contains("content remains")
            && message.contains(&format!("ConfigMap {name}/held (finalizers: kubesweep.dev/hold)"))),
        "{refused:?}"
    );
    let still: Namespace = Api::all(client.clone())
        .get(&name)
        .await
        .expect("namespace still there");
    assert_eq!(
        still.spec.unwrap().finalizers.unwrap(),
        vec!["kubernetes".to_string()]
    );

    // Releasing the content lets the namespace controller finish on its own.
    clear_finalizers(&client, &name, "held").await;
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // the harness lock serialises whole tests by design
async fn finalize_waits_for_a_broken_api_group_then_unblocks_the_empty_namespace() {
    let _lock = cluster_lock();
    let client = client().await;
    let name = unique_name("stuck-discovery");
    let ns = create_namespace(&client, &name).await;
    let group = format!("{}.test.kubesweep.dev", unique_name("blocker"));
    let apiservice_name = format!("v1.{group}");
    let apiservices = discover::dynamic_api(&client, &types::api_service(), None);
    let apiservice: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": apiservice_name},
        "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "insecureSkipTLSVerify": true,
                 "service": {"namespace": "default", "name": "kubesweep-missing-backend", "port": 443}}
    }))
    .unwrap();
    apiservices
        .create(&PostParams::default(), &apiservice)
        .await
        .expect("create APIService");
    Api::<Namespace>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for_namespace_condition(&client, &name, "NamespaceDeletionDiscoveryFailure").await;

    let target = ObjectRef {
        resource: types::namespace(),
        namespace: None,
        name: name.clone(),
        uid: ns.metadata.uid.clone().unwrap(),
        resource_version: ns.metadata.resource_version.clone().unwrap(),
    };
    let finalize = single_action(target.clone(), Operation::FinalizeNamespaceIfStuck);
    // While a group is unavailable, kubesweep cannot list every type the
    // namespace may hold, so it cannot prove the namespace empty: refused.
    let refused = execute::run_single(&client, &finalize, &RetryPolicy::standard(), true).await;
    let still = Api::<Namespace>::all(client.clone())
        .get_opt(&name)
        .await
        .expect("read namespace");
    let _ = apiservices
        .delete(&apiservice_name, &DeleteParams::default())
        .await;
    assert!(
        matches!(&refused, Outcome::Failed { message } if message.contains("cannot be proven empty")
            && message.contains(&group)),
        "{refused:?}"
    );
    assert!(still.is_some(), "finalized without proof");
    // With the group gone, the listing is complete and empty: the namespace
    // is finalized (or the namespace controller has finished first).
    // (Discovery may report the removed group for a moment longer.)
    let mut outcome = refused;
    for _ in 0..40 {
        outcome = execute::run_single(&client, &finalize, &RetryPolicy::standard(), true).await;
        if !outcome.is_failure() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        matches!(outcome, Outcome::Done { .. } | Outcome::AlreadyGone),
        "{outcome:?}"
    );
    let options = ExecuteOptions {
        wait_timeout: Duration::from_secs(30),
        ..ExecuteOptions::default()
    };
    let wait = execute::wait_for_deletion(&client, vec![target], &options).await;
    assert!(!wait.timed_out, "{wait:?}");
}

/// Throttles one service account hard with API Priority and Fairness (a
/// priority level with a single seat that rejects instead of queuing) and
/// checks what a 429 carries and that the retry wrapper rides it out.
#[tokio::test]
async fn throttled_requests_are_retried_until_they_succeed() {
    let _share = cluster_share();
    let client = client().await;
    let ns = unique_name("throttle");
    create_namespace(&client, &ns).await;
    let level_name = unique_name("kubesweep-throttle");
    let levels = discover::dynamic_api(
        &client,
        &ResourceType {
            group: "flowcontrol.apiserver.k8s.io".into(),
            version: "v1".into(),
            kind: "PriorityLevelConfiguration".into(),
            plural: "prioritylevelconfigurations".into(),
            namespaced: false,
        },
        None,
    );
    let schemas = discover::dynamic_api(
        &client,
        &ResourceType {
            group: "flowcontrol.apiserver.k8s.io".into(),
            version: "v1".into(),
            kind: "FlowSchema".into(),
            plural: "flowschemas".into(),
            namespaced: false,
        },
        None,
    );
    let level: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": level_name},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"}}}
    }))
    .unwrap();
    levels
        .create(&PostParams::default(), &level)
        .await
        .expect("priority level");
    let schema: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": level_name},
        "spec": {"priorityLevelConfiguration": {"name": level_name}, "matchingPrecedence": 500,
            "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {"namespace": ns, "name": "flood"}}],
                       "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
                       "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}
    }))
    .unwrap();
    schemas
        .create(&PostParams::default(), &schema)
        .await
        .expect("flow schema");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("view".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "flood".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let flood_config = service_account_config(&client, &ns, "flood").await;
    // kubesweep's client, with its HTTP-level retries and throttle gate.
    let flood = kubesweep::cluster::client_from_config(flood_config.clone()).expect("client");
    // A bare kube client (no retries at all), to see a 429 as kube reports it.
    let mut bare_config = flood_config;
    bare_config.default_retry = false;
    let bare = kube::Client::try_from(bare_config).expect("bare client");
    // The API server picks up new flow-control objects asynchronously: wait
    // until its flow-control controller has digested this configuration,
    // which it shows by writing the schema's `Dangling` condition (False:
    // its priority level exists) in the same pass that puts it in effect.
    let mut digested = false;
    for _ in 0..300 {
        let current = schemas.get(&level_name).await.expect("read flow schema");
        let conditions = current.data["status"]["conditions"].as_array().cloned();
        digested = conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c["type"] == "Dangling" && c["status"] == "False");
        if digested {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(digested, "the API server never took up the flow schema");

    let burst = |client: Client, policy: RetryPolicy| {
        let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);
        async move {
            futures::stream::iter(0..60)
                .map(|_| {
                    let configmaps = configmaps.clone();
                    let policy = policy.clone();
                    async move {
                        let params = kube::api::ListParams::default();
                        kubesweep::retry::with_retry(&policy, "list", || configmaps.list(&params))
                            .await
                    }
                })
                .buffer_unordered(60)
                .collect::<Vec<_>>()
                .await
        }
    };
    // Bursts until the server throttles one (the configuration is in
    // effect, but a burst of quick reads can still fit through one seat).
    let mut throttled = Vec::new();
    for _ in 0..10 {
        throttled = burst(bare.clone(), RetryPolicy::none())
            .await
            .into_iter()
            .filter_map(Result::err)
            .filter(|e| kubesweep::retry::status_code(e) == Some(429))
            .collect();
        if !throttled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let retried = burst(flood.clone(), RetryPolicy::standard()).await;
    let _ = schemas.delete(&level_name, &DeleteParams::default()).await;
    let _ = levels.delete(&level_name, &DeleteParams::default()).await;
    delete_namespace(&client, &ns).await;

    assert!(!throttled.is_empty(), "the burst was never throttled");
    for e in &throttled {
        eprintln!(
            "429 as seen through kube: {e:?} -> {:?}",
            kubesweep::retry::classify(e)
        );
        assert!(matches!(
            kubesweep::retry::classify(e),
            kubesweep::retry::Retryable::Yes { .. }
        ));
    }
    let failed: Vec<_> = retried.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "retries did not ride out the throttling: {failed:?}"
    );
}
