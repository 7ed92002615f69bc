//! Custom resources left to their CRD's deletion, against the real control
//! plane: `apply` strips the platform finalizers of instances nothing
//! depends on and that carry no foreign finalizer, sends no delete for them,
//! and the API server removes them when kubesweep deletes their CRD (UID
//! precondition). Instances something depends on, instances held by a
//! foreign finalizer and instances of a shared CRD get their own delete as
//! before. Foreign objects stay identical, the backup holds every removed
//! instance and `restore` brings them back.
//!
//! A whole-cluster apply: the test takes the cluster lock.

mod common;

use common::run::{audit_file, backup_dir, start};
use common::*;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use serde_json::{Value, json};

/// A platform group (under kubesphere.io) only this test uses.
const GROUP: &str = "cascade.kubesphere.io";
const GADGETS: &str = "gadgets.cascade.kubesphere.io";
const APPLICATIONS: &str = "applications.app.k8s.io";
/// A user namespace: not the platform's, kept.
const NS: &str = "cascade-user";
const PLATFORM_FINALIZER: &str = "kubesphere.io/cascading-deletion";
const FOREIGN_FINALIZER: &str = "example.com/hold";

fn crd(group: &str, plural: &str, kind: &str) -> CustomResourceDefinition {
    // Groups under k8s.io need the API approval annotation.
    let annotations = if group.ends_with("k8s.io") {
        json!({"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/application/pull/2"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "annotations": annotations},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                           "listKind": format!("{kind}List")},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd")
}

fn api(client: &Client, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn gadgets(client: &Client) -> Api<DynamicObject> {
    api(client, GROUP, "Gadget", "gadgets")
}

fn applications(client: &Client) -> Api<DynamicObject> {
    api(client, "app.k8s.io", "Application", "applications")
}

fn object(group: &str, kind: &str, name: &str, metadata: Value) -> DynamicObject {
    let mut value = json!({"apiVersion": format!("{group}/v1"), "kind": kind,
                           "metadata": {"name": name, "namespace": NS}, "spec": {"size": 1}});
    if let Value::Object(extra) = metadata {
        for (k, v) in extra {
            value["metadata"][k] = v;
        }
    }
    serde_json::from_value(value).expect("object")
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 3 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    wait_until(&format!("{name} established"), || async {
        crds.get_opt(name)
            .await
            .expect("get crd")
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
    .await;
}

/// Removes what an earlier (failed) run may have left: instances freed of
/// finalizers, the test's CRD, the user namespace, and the Application CRD
/// when this test created it.
async fn clean(client: &Client, drop_applications: bool) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = vec![GADGETS];
    if drop_applications {
        names.push(APPLICATIONS);
    }
    for (name, api) in names.iter().zip([gadgets(client), applications(client)]) {
        if crds.get_opt(name).await.expect("get crd").is_none() {
            continue;
        }
        if let Ok(list) = api.list(&Default::default()).await {
            for o in list {
                let patch = json!({"metadata": {"finalizers": null}});
                let _ = api
                    .patch(
                        &o.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
        }
        let _ = crds.delete(name, &DeleteParams::default()).await;
        wait_until(&format!("{name} gone"), || async {
            crds.get_opt(name).await.expect("get crd").is_none()
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(NS).await.expect("get ns").is_some() {
        let _ = namespaces.delete(NS, &DeleteParams::default()).await;
        wait_until("user namespace gone", || async {
            namespaces.get_opt(NS).await.expect("get ns").is_none()
        })
        .await;
    }
}

fn operation_type(plan: &Value, name: &str) -> (String, Value) {
    plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| {
            p["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .map(move |a| (p["id"].clone(), a))
        })
        .find(|(_, a)| a["target"]["name"] == name && a["target"]["namespace"] == NS)
        .map(|(phase, a)| {
            (
                format!(
                    "{} {}",
                    phase.as_str().unwrap_or("?"),
                    a["operation"]["type"].as_str().unwrap_or("?")
                ),
                a["operation"].clone(),
            )
        })
        .unwrap_or_else(|| panic!("no action on {name}"))
}

#[tokio::test]
async fn unowned_instances_go_with_their_crd_and_the_rest_as_before() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    clean(&client, false).await;
    // The shared CRD: created here unless the cluster serves it already.
    let created_applications = crds.get_opt(APPLICATIONS).await.expect("get").is_none();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    crds.create(&PostParams::default(), &crd(GROUP, "gadgets", "Gadget"))
        .await
        .expect("create gadgets CRD");
    wait_established(&crds, GADGETS).await;
    if created_applications {
        crds.create(
            &PostParams::default(),
            &crd("app.k8s.io", "applications", "Application"),
        )
        .await
        .expect("create applications CRD");
    }
    wait_established(&crds, APPLICATIONS).await;

    let pp = PostParams::default();
    let g = gadgets(&client);
    let gadget = |name: &str, metadata: Value| object(GROUP, "Gadget", name, metadata);
    // Qualify: nothing depends on them, no foreign finalizer.
    g.create(
        &pp,
        &gadget("free-1", json!({"finalizers": [PLATFORM_FINALIZER]})),
    )
    .await
    .expect("free-1");
    g.create(&pp, &gadget("free-2", json!({})))
        .await
        .expect("free-2");
    // Do not qualify: a user ConfigMap names it as owner; a foreign finalizer.
    let owner = g
        .create(
            &pp,
            &gadget("owner", json!({"finalizers": [PLATFORM_FINALIZER]})),
        )
        .await
        .expect("owner");
    g.create(
        &pp,
        &gadget(
            "held",
            json!({"finalizers": [PLATFORM_FINALIZER, FOREIGN_FINALIZER]}),
        ),
    )
    .await
    .expect("held");
    let apps = applications(&client);
    let app = |name: &str, metadata: Value| object("app.k8s.io", "Application", name, metadata);
    apps.create(
        &pp,
        &app(
            "platform-app",
            json!({"labels": {"kubesphere.io/extension-ref": "cascade"}}),
        ),
    )
    .await
    .expect("platform app");
    let their_app = apps
        .create(&pp, &app("their-app", json!({})))
        .await
        .expect("their app");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let dependent = config_maps
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "dependent", "ownerReferences": [{
                    "apiVersion": format!("{GROUP}/v1"), "kind": "Gadget",
                    "name": "owner", "uid": owner.uid().expect("uid")}]},
                "data": {"k": "v"}}))
            .expect("cm"),
        )
        .await
        .expect("dependent");
    let untouched = config_maps
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "untouched"}, "data": {"k": "v"}}))
                .expect("cm"),
        )
        .await
        .expect("untouched");
    let ns_before = namespaces.get(NS).await.expect("ns");

    // The plan says what happens to each instance.
    let plan = kubesweep(&["plan", "-o", "json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(plan["schema_version"], 2);
    for name in ["free-1", "free-2"] {
        let (what, op) = operation_type(&plan, name);
        assert_eq!(what, "custom-resources removedWithCrd", "{name}: {op}");
        assert_eq!(op["crd"], GADGETS);
    }
    assert_eq!(
        operation_type(&plan, "free-1").1["finalizers"],
        json!([PLATFORM_FINALIZER])
    );
    let (what, op) = operation_type(&plan, "owner");
    assert_eq!(what, "custom-resources stripFinalizersThenDelete");
    assert_eq!(op["propagation"], "Orphan");
    let (what, op) = operation_type(&plan, "held");
    assert_eq!(what, "custom-resources stripFinalizersThenDelete");
    assert_eq!(op["propagation"], "Background");
    assert_eq!(op["finalizers"], json!([PLATFORM_FINALIZER]));
    let (what, _) = operation_type(&plan, "platform-app");
    assert_eq!(what, "custom-resources stripFinalizersThenDelete");
    assert!(plan["counts"]["removed_with_crds"].as_u64() >= Some(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let run = start(&["apply", "--yes"], &test_kubeconfig(), dir.path());
    // `held` is deleted by name in the custom-resources phase and waits for
    // its foreign finalizer; until it is gone the CRDs phase cannot start.
    // Meanwhile the qualifying instances exist and nobody deleted them.
    wait_until("held deleted by name", || async {
        g.get_opt("held")
            .await
            .expect("get held")
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
    })
    .await;
    for name in ["free-1", "free-2"] {
        let o = g.get(name).await.expect("qualifying instance still there");
        assert!(
            o.metadata.deletion_timestamp.is_none(),
            "{name} was deleted before its CRD"
        );
    }
    // The foreign finalizer's owner lets go.
    let held = g.get("held").await.expect("held");
    let rest: Vec<String> = held
        .finalizers()
        .iter()
        .filter(|f| *f != FOREIGN_FINALIZER)
        .cloned()
        .collect();
    g.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": rest}})),
    )
    .await
    .expect("release held");
    let apply = run.finish();
    assert_applied_clean(&apply);

    // Gone with the CRD; everything foreign as it was.
    assert!(crds.get_opt(GADGETS).await.expect("get").is_none());
    assert!(apps.get_opt("platform-app").await.expect("get").is_none());
    assert!(
        crds.get_opt(APPLICATIONS).await.expect("get").is_some(),
        "shared CRD kept"
    );
    let their_after = apps.get("their-app").await.expect("their app stays");
    assert_eq!(their_after.resource_version(), their_app.resource_version());
    let untouched_after = config_maps.get("untouched").await.expect("untouched");
    assert_eq!(
        untouched_after.resource_version(),
        untouched.resource_version()
    );
    let ns_after = namespaces.get(NS).await.expect("ns");
    assert_eq!(ns_after.resource_version(), ns_before.resource_version());
    let dependent_after = config_maps.get("dependent").await.expect("dependent kept");
    assert_eq!(dependent_after.uid(), dependent.uid());
    assert_eq!(dependent_after.data, dependent.data);
    assert!(dependent_after.owner_references().is_empty());

    // The audit record: the qualifying instances were stripped, never
    // deleted by name; the others were.
    let audit =
        std::fs::read_to_string(audit_file(dir.path()).expect("audit record")).expect("read audit");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit JSON"))
        .collect();
    let line = |name: &str| {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["name"] == name && l["namespace"] == NS)
            .collect();
        assert_eq!(mine.len(), 1, "{name}: {mine:?}");
        mine[0].clone()
    };
    for name in ["free-1", "free-2"] {
        let l = line(name);
        assert_eq!(l["operation"]["type"], "removedWithCrd", "{l}");
        assert_eq!(l["result"], "done", "{l}");
        assert!(
            l["message"].as_str().is_some_and(|m| m.contains(&format!(
                "removed by the deletion of CRD {GADGETS}, no delete of its own"
            ))),
            "{l}"
        );
    }
    for name in ["owner", "held", "platform-app"] {
        assert_eq!(line(name)["operation"]["type"], "stripFinalizersThenDelete");
    }

    // The backup holds the qualifying instances, to be re-created.
    let archive = std::fs::read_dir(backup_dir(dir.path()))
        .expect("backups")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("archive");
    let inspect = kubesweep(&["backup", "inspect", utf8(&archive), "-o", "json"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", explain(&inspect));
    let listing: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let entries = listing["entries"].as_array().expect("entries");
    for name in ["free-1", "free-2"] {
        let entry = entries
            .iter()
            .find(|e| e["kind"] == "Gadget" && e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the backup"));
        assert_eq!(entry["restore"], "recreate", "{entry}");
    }
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "CustomResourceDefinition" && e["name"] == GADGETS)
    );

    // `restore` brings the CRD and the instances back.
    let restore = kubesweep(&["restore", utf8(&archive)]);
    assert_eq!(restore.status.code(), Some(0), "{}", explain(&restore));
    for name in ["free-1", "free-2"] {
        let back = g.get(name).await.expect("restored");
        assert_eq!(back.data["spec"]["size"], 1, "{name}");
    }
    assert_eq!(
        g.get("free-1").await.expect("free-1").finalizers(),
        [PLATFORM_FINALIZER.to_owned()]
    );

    clean(&client, created_applications).await;
}
