//! Ownership of namespaces under real-world ambiguity, against the real
//! control plane (issue 9, items 1–4):
//! - a namespace an InstallPlan merely names is kept, with the user's
//!   objects untouched, when it holds anything that is not the platform's;
//! - the last-resort `/finalize` never runs on a namespace kubesweep has not
//!   itself found empty (kube-controller-manager stopped, on a control plane
//!   of the test's own);
//! - under ordered namespace deletion, a pod held by the platform's
//!   finalizer is freed, one held by another program's is reported by name
//!   and finalizer and never touched;
//! - bindings that grant roles to ServiceAccounts of deleted namespaces are
//!   reported, and removed only when they are the platform's.
//!
//! Tests that run a whole-cluster `apply` take the cluster lock.

mod common;

use common::*;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource, ResourceExt};
use kubesweep_fixtures::harness::{PrivateControlPlane, cluster_lock, shared_client, unique_name};
use kubesweep_fixtures::{SeedOptions, seed};
use serde_json::json;

/// The label that, with the `extension-` prefix, proves a namespace the platform's.
const EXTENSION_LABEL: &str = "kubesphere.io/extension-ref";

/// `(uid, resourceVersion)`: what must not change on an object kubesweep keeps.
type Identity = (Option<String>, Option<String>);

fn identity<K: Resource>(object: &K) -> Identity {
    (
        object.meta().uid.clone(),
        object.meta().resource_version.clone(),
    )
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("test object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create test object")
}

async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) -> Namespace {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(
        &namespaces,
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .await
}

fn installplans(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubesphere.io", "v1alpha1", "InstallPlan");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "installplans"),
    )
}

/// Creates KubeSphere's InstallPlan CRD (as the fixtures define it: any
/// status is kept) if it is missing.
async fn ensure_installplan_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let def = kubesweep_fixtures::crds::kubesphere_crd("kubesphere.io", "installplans");
    if crds.get_opt(&def.name()).await.expect("read crd").is_none() {
        create(&crds, def.manifest()).await;
    }
}

/// An InstallPlan naming `namespace` as its target; retried while its new
/// CRD is not yet served.
async fn installplan_targeting(client: &Client, name: &str, namespace: &str) {
    let plan: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubesphere.io/v1alpha1", "kind": "InstallPlan",
        "metadata": {"name": name},
        "spec": {"extension": {"name": name, "version": "1.0.0"}},
        "status": {"state": "Installed", "targetNamespace": namespace},
    }))
    .expect("installplan");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match installplans(client)
            .create(&PostParams::default(), &plan)
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create installplan {name}: {e}"),
        }
    }
}

/// Waits until namespace `name` is gone (or `limit` passes); whether it is.
async fn gone_within(client: &Client, name: &str, limit: Duration) -> bool {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if namespaces
            .get_opt(name)
            .await
            .expect("read namespace")
            .is_none()
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn plan_json(kubeconfig: &std::path::Path) -> serde_json::Value {
    let plan = kubesweep_as(&["plan", "-o", "json"], kubeconfig);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    serde_json::from_slice(&plan.stdout).expect("plan JSON")
}

fn findings(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["findings"].as_array().cloned().unwrap_or_default()
}

// Item 1.

#[tokio::test]
async fn a_namespace_an_installplan_names_is_kept_with_the_users_objects_when_not_all_the_platforms()
 {
    let _lock = cluster_lock();
    let client = shared_client().await;
    ensure_installplan_crd(&client).await;

    // The user's namespace, made before an extension was installed into it.
    let logging = unique_name("logging");
    create_namespace(&client, &logging, json!({"team": "observability"})).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &logging);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &logging);
    create(
        &configmaps,
        json!({"metadata": {"name": "user-cm"}, "data": {"k": "v"}}),
    )
    .await;
    create(
        &secrets,
        json!({"metadata": {"name": "user-secret"}, "stringData": {"password": "p"}}),
    )
    .await;
    installplan_targeting(&client, &logging, &logging).await;
    // A namespace an InstallPlan names that holds nothing but Kubernetes'
    // own defaults: everything in it is the platform's, so it goes.
    let empty = unique_name("ext-target");
    create_namespace(&client, &empty, json!({})).await;
    installplan_targeting(&client, &empty, &empty).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_before = identity(&namespaces.get(&logging).await.expect("namespace"));
    let cm_before = identity(&configmaps.get("user-cm").await.expect("cm"));
    let secret_before = identity(&secrets.get("user-secret").await.expect("secret"));

    let plan = plan_json(&test_kubeconfig());

    let apply = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&apply);

    let ns = namespaces
        .get(&logging)
        .await
        .expect("the user's namespace is kept");
    assert!(ns.metadata.deletion_timestamp.is_none(), "{ns:?}");
    assert_eq!(
        identity(&ns),
        ns_before,
        "the namespace had nothing of the platform's to lose"
    );
    assert_eq!(
        identity(&configmaps.get("user-cm").await.expect("user-cm kept")),
        cm_before
    );
    assert_eq!(
        identity(&secrets.get("user-secret").await.expect("user-secret kept")),
        secret_before
    );
    assert!(
        gone_within(&client, &empty, Duration::from_secs(60)).await,
        "{empty} holds only Kubernetes' defaults and should be deleted"
    );

    // The plan said what it kept and why.
    let finding = findings(&plan)
        .into_iter()
        .find(|f| f["subject"] == format!("namespace {logging}"))
        .unwrap_or_else(|| panic!("no finding for {logging}: {:#?}", plan["findings"]));
    let reason = finding["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("InstallPlan {logging}"))
            && reason.contains(&format!("ConfigMap {logging}/user-cm"))
            && reason.contains(&format!("Secret {logging}/user-secret")),
        "{reason}"
    );

    namespaces
        .delete(&logging, &DeleteParams::default())
        .await
        .expect("clean up");
}

// Item 2.

/// Names of the ConfigMaps and Secrets in `namespace` with their identities.
async fn content_identities(client: &Client, namespace: &str) -> Vec<(String, Identity)> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out: Vec<(String, Identity)> = Vec::new();
    for cm in configmaps
        .list(&ListParams::default())
        .await
        .expect("list cms")
    {
        out.push((format!("ConfigMap {}", cm.name_any()), identity(&cm)));
    }
    for secret in secrets
        .list(&ListParams::default())
        .await
        .expect("list secrets")
    {
        out.push((format!("Secret {}", secret.name_any()), identity(&secret)));
    }
    out.sort();
    out
}

#[tokio::test]
async fn with_the_controller_manager_down_no_namespace_is_finalized_over_its_content() {
    // Stopping the controller manager would break every other test on the
    // shared cluster: this one has a control plane of its own.
    let plane = PrivateControlPlane::start();
    let client = plane.client().await;
    seed(&client, &SeedOptions::default())
        .await
        .expect("seed the footprint");
    // Content kubesweep does not delete itself: the namespace controller
    // would, if it ran.
    let ns = "kubesphere-system";
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create(
        &configmaps,
        json!({"metadata": {"name": "left-for-the-namespace-controller"}}),
    )
    .await;

    plane.stop("kube-controller-manager");
    // Finalizing stuck namespaces is on by default (--no-finalize-stuck-namespaces
    // turns it off); --keep-going so no earlier wait (nothing is garbage
    // collected now) keeps the run from reaching it.
    // The controller path: the last resort's own proof is under test here
    // (the fast path would delete the content itself, see namespace_fast_path.rs).
    let apply = kubesweep_as(
        &[
            "apply",
            "--yes",
            "--wait-timeout",
            "3",
            "--keep-going",
            "--namespace-wait",
            "controller",
        ],
        plane.kubeconfig(),
    );
    assert_eq!(apply.status.code(), Some(1), "{}", explain(&apply));

    // Nothing orphaned: the namespace is there, Terminating, its objects readable.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let content = content_identities(&client, ns).await;
    let namespace = namespaces
        .get_opt(ns)
        .await
        .expect("read namespace")
        .unwrap_or_else(|| {
            panic!(
                "{ns} was finalized while it still held (now orphaned): {content:?}\n{}",
                explain(&apply)
            )
        });
    assert!(namespace.metadata.deletion_timestamp.is_some());
    assert!(
        namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == "kubernetes")),
        "{namespace:?}"
    );
    assert!(
        content
            .iter()
            .any(|(n, _)| n == "ConfigMap left-for-the-namespace-controller"),
        "{content:?}"
    );
    // Nothing changes while nobody deletes content: a second look finds the same objects.
    assert_eq!(content_identities(&client, ns).await, content);
    // The run said which namespace stays, and what holds it.
    let err = stderr(&apply);
    assert!(
        err.contains(&format!("namespace {ns} stays Terminating, not finalized")),
        "{}",
        explain(&apply)
    );
    assert!(
        err.contains("ConfigMap kubesphere-system/left-for-the-namespace-controller"),
        "{}",
        explain(&apply)
    );

    // With the controller manager back, the namespace controller finishes
    // and a second run converges.
    plane.start_component("kube-controller-manager");
    let apply = kubesweep_as(
        &["apply", "--yes", "--wait-timeout", "120"],
        plane.kubeconfig(),
    );
    assert_applied_clean(&apply);
    assert!(namespaces.get_opt(ns).await.expect("read").is_none());
}

// Item 3.

async fn pod_with_finalizer(client: &Client, namespace: &str, name: &str, finalizer: &str) -> Pod {
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
    // No node exists: the pod stays Pending, an object like any other.
    create(
        &pods,
        json!({"metadata": {"name": name, "finalizers": [finalizer]},
               "spec": {"containers": [{"name": "c", "image": "registry.example.com/none:1"}]}}),
    )
    .await
}

#[tokio::test]
async fn a_pod_held_by_the_platforms_finalizer_is_freed_one_held_by_anothers_is_reported_and_kept()
{
    let _lock = cluster_lock();
    let client = shared_client().await;
    let freed_ns = unique_name("extension-freed");
    let held_ns = unique_name("extension-held");
    for ns in [&freed_ns, &held_ns] {
        create_namespace(&client, ns, json!({EXTENSION_LABEL: "test"})).await;
    }
    pod_with_finalizer(
        &client,
        &freed_ns,
        "platform-held",
        "kubesphere.io/test-hold",
    )
    .await;
    let foreign =
        pod_with_finalizer(&client, &held_ns, "foreign-held", "acme.example.com/hold").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &held_ns);
    let behind = create(&configmaps, json!({"metadata": {"name": "behind-the-pod"}})).await;

    let apply = kubesweep(&["apply", "--yes", "--wait-timeout", "20"]);
    assert_eq!(apply.status.code(), Some(1), "{}", explain(&apply));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&freed_ns).await.expect("read").is_none(),
        "{freed_ns}: its pod's platform finalizer should have been stripped\n{}",
        explain(&apply)
    );
    let held = namespaces
        .get_opt(&held_ns)
        .await
        .expect("read")
        .expect("held namespace stays");
    assert!(held.metadata.deletion_timestamp.is_some());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &held_ns);
    let pod = pods
        .get("foreign-held")
        .await
        .expect("the foreign-held pod stays");
    assert_eq!(pod.metadata.uid, foreign.metadata.uid);
    assert_eq!(pod.finalizers(), ["acme.example.com/hold".to_owned()]);
    // Ordered deletion: the namespace controller deletes pods first and waits,
    // so the rest of the namespace is untouched while the pod is held.
    let cm = configmaps
        .get("behind-the-pod")
        .await
        .expect("content behind the pod stays");
    assert_eq!(identity(&cm), identity(&behind));
    assert!(cm.metadata.deletion_timestamp.is_none());
    // The run named the pod and the finalizer that hold the namespace.
    assert!(
        stderr(&apply).contains(&format!(
            "Pod {held_ns}/foreign-held (finalizers: acme.example.com/hold)"
        )),
        "{}",
        explain(&apply)
    );

    // Its owner lets go; the namespace then goes.
    pods.patch(
        "foreign-held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release the pod");
    assert!(gone_within(&client, &held_ns, Duration::from_secs(60)).await);
}

// Item 4.

#[tokio::test]
async fn bindings_to_service_accounts_of_deleted_namespaces_are_reported_and_only_the_platforms_removed()
 {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let ns = unique_name("extension-rbac");
    create_namespace(&client, &ns, json!({EXTENSION_LABEL: "test"})).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    create(&accounts, json!({"metadata": {"name": "worker"}})).await;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = |name: &str| {
        json!({"metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "ServiceAccount", "namespace": ns, "name": "worker"}]})
    };
    let foreign_name = unique_name("acme-reader");
    let platform_name = format!("kubesphere:{}:helm-executor", unique_name("ext"));
    let foreign = create(&bindings, binding(&foreign_name)).await;
    create(&bindings, binding(&platform_name)).await;

    let plan = plan_json(&test_kubeconfig());
    let dangling: Vec<(String, bool)> = findings(&plan)
        .into_iter()
        .filter(|f| f["kind"] == "danglingBinding")
        .filter(|f| f["subjects"] == json!([format!("ServiceAccount {ns}/worker")]))
        .map(|f| {
            (
                f["target"]["name"].as_str().unwrap_or_default().to_owned(),
                f["removed"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    let mut dangling = dangling;
    dangling.sort();
    let mut expected = vec![(foreign_name.clone(), false), (platform_name.clone(), true)];
    expected.sort();
    assert_eq!(dangling, expected, "{:#?}", plan["findings"]);

    let apply = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&apply);
    assert!(
        bindings
            .get_opt(&platform_name)
            .await
            .expect("read")
            .is_none()
    );
    let kept = bindings
        .get(&foreign_name)
        .await
        .expect("the foreign binding is kept");
    assert_eq!(identity(&kept), identity(&foreign));
    bindings
        .delete(&foreign_name, &DeleteParams::default())
        .await
        .expect("clean up");
}
