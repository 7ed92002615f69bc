//! The `kubesweep` binary against the real control plane, on the seeded
//! KubeSphere 4.1 footprint: the whole job (plan → apply → verify), the safety
//! verdict on every kept object, idempotence, and every refusal that must
//! happen before the first change (stale plan, other cluster, restricted
//! credentials, no confirmation, blast radius, running controllers).
//!
//! All tests use the footprint's fixed names, so each takes the cluster lock.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, kubeconfig_path, shared_client, unique_name};
use kubesweep_fixtures::{Footprint, Role, snapshot};
use serde_json::json;

/// The shared CRD the built-in profile keeps unless `--include-shared-crds`.
const SHARED_CRD: &str = "applications.app.k8s.io";

/// UID and resourceVersion of every seeded object (any role): equal before
/// and after means nothing in the footprint was touched.
async fn footprint_state(
    client: &Client,
    footprint: &Footprint,
) -> BTreeMap<String, Option<(String, String)>> {
    kubesweep_fixtures::footprint_state(client, footprint)
        .await
        .expect("read the footprint state")
}

/// The propagation of the custom-resources action on `uid` in a plan's JSON.
fn propagation_in(plan: &serde_json::Value, uid: &serde_json::Value) -> Option<String> {
    plan["phases"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == "custom-resources")?["actions"]
        .as_array()?
        .iter()
        .find(|a| &a["target"]["uid"] == uid)
        .and_then(|a| a["operation"]["propagation"].as_str().map(str::to_owned))
}

/// Whether a custom-resources action removes an object nothing depends on:
/// a Background delete, or the removal with its CRD (which is one).
fn deleted_with_nothing_depending(action: &serde_json::Value) -> bool {
    action["operation"]["propagation"] == "Background"
        || action["operation"]["type"] == "removedWithCrd"
}

/// Picks a platform custom resource that nothing depends on (the plan
/// deletes it Background, or leaves it to its CRD's deletion) and makes a foreign cluster-scoped object
/// of a type no fixed list covers (a PriorityClass) its dependent: deleting
/// the owner Background would let the garbage collector delete it.
async fn foreign_cluster_object_owned_by_a_platform_resource(
    client: &Client,
    kubeconfig: &Path,
) -> (PriorityClass, serde_json::Value) {
    let plan = kubesweep_as(&["plan", "-o", "json"], kubeconfig);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let owner = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["id"] == "custom-resources")
        .and_then(|p| p["actions"].as_array())
        .and_then(|actions| {
            actions
                .iter()
                .find(|a| deleted_with_nothing_depending(a) && a["target"]["namespace"].is_null())
        })
        .map(|a| a["target"].clone())
        .expect("a cluster-scoped platform resource nothing depends on");
    let resource = &owner["resource"];
    let api_version = format!(
        "{}/{}",
        resource["group"].as_str().expect("group"),
        resource["version"].as_str().expect("version")
    );
    let class: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": unique_name("owned-by-platform"),
                     "ownerReferences": [{"apiVersion": api_version, "kind": resource["kind"],
                                          "name": owner["name"], "uid": owner["uid"]}]},
        "value": 12345,
    }))
    .expect("priority class");
    let created = Api::<PriorityClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("create the PriorityClass");
    (created, owner)
}

#[tokio::test]
async fn cli_removes_the_footprint_touching_nothing_else_and_a_second_apply_is_a_no_op() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint)
        .await
        .expect("snapshot before");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");
    let (owned, owner) =
        foreign_cluster_object_owned_by_a_platform_resource(&client, &kubeconfig).await;

    let plan = kubesweep_as(
        &["plan", "-o", plan_file.to_str().expect("utf-8")],
        &kubeconfig,
    );
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).expect("plan file"))
            .expect("plan JSON");
    assert_eq!(saved["schema_version"], 2);
    assert_eq!(
        propagation_in(&saved, &owner["uid"]),
        Some("Orphan".to_owned()),
        "an owner of a cluster-scoped object is orphaned"
    );

    let apply = kubesweep_as(
        &["apply", plan_file.to_str().expect("utf-8"), "--yes"],
        &kubeconfig,
    );
    assert_applied_clean(&apply);

    // The garbage collector acts asynchronously on deleted owners (Workspaces,
    // Applications): give it time to do damage, if it could, before judging.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let state = footprint_state(&client, &footprint).await;
    for object in footprint.with_role(Role::Platform) {
        let key = object.key.to_string();
        if object.key.name == SHARED_CRD {
            assert!(
                state[&key].is_some(),
                "the shared CRD {SHARED_CRD} is kept by default"
            );
        } else {
            assert!(
                state[&key].is_none(),
                "platform object {key} is still there"
            );
        }
    }
    assert_verdict_clean(&client, &footprint, &before).await;
    // The verdict allows the removal of KubeSphere keys; prove they are really gone.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in footprint
        .system_namespaces()
        .into_iter()
        .chain(footprint.user_namespaces())
    {
        assert_namespace_kept_clean(&namespaces, name).await;
    }

    let verify = kubesweep_as(&["verify"], &kubeconfig);
    assert_eq!(verify.status.code(), Some(0), "{}", explain(&verify));

    // The foreign PriorityClass lost only its owner reference (the garbage
    // collector's part of an Orphan delete).
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let after_owned = classes
        .get(&owned.name_any())
        .await
        .expect("the foreign object owned by a platform resource survives");
    assert_eq!(after_owned.uid(), owned.uid());
    assert_eq!(after_owned.value, owned.value);
    classes
        .delete(&owned.name_any(), &DeleteParams::default())
        .await
        .expect("clean up the PriorityClass");

    let state_before_second = footprint_state(&client, &footprint).await;
    let again = kubesweep_as(&["apply", "--yes"], &kubeconfig);
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        explain(&again)
    );
    assert_eq!(
        state_before_second,
        footprint_state(&client, &footprint).await,
        "a second apply on a clean cluster must change nothing"
    );

    // The shared CRD goes only on request, and only when no foreign object
    // uses it: the user's Application (stamped `kubesphere.io/creator` by
    // the console, no proof of the platform's) keeps it.
    let shared_crd_key = format!("CustomResourceDefinition.apiextensions.k8s.io {SHARED_CRD}");
    let shared = kubesweep_as(&["apply", "--yes", "--include-shared-crds"], &kubeconfig);
    assert_eq!(shared.status.code(), Some(0), "{}", explain(&shared));
    let state = footprint_state(&client, &footprint).await;
    let user_app = footprint
        .with_role(Role::User)
        .find(|o| o.key.kind == "Application")
        .expect("the user's Application is seeded");
    assert!(
        state[&shared_crd_key].is_some(),
        "a user's Application uses it"
    );
    assert!(state[&user_app.key.to_string()].is_some());
    // Once the user has removed it, nothing foreign uses the CRD.
    let gvk = kube::core::GroupVersionKind::gvk("app.k8s.io", "v1beta1", "Application");
    let apps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        user_app.key.namespace.as_deref().expect("namespaced"),
        &kube::core::ApiResource::from_gvk_with_plural(&gvk, "applications"),
    );
    apps.delete(&user_app.key.name, &DeleteParams::default())
        .await
        .expect("the user removes the Application");
    let shared = kubesweep_as(&["apply", "--yes", "--include-shared-crds"], &kubeconfig);
    assert_eq!(shared.status.code(), Some(0), "{}", explain(&shared));
    let state = footprint_state(&client, &footprint).await;
    assert!(state[&shared_crd_key].is_none());
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn a_plan_for_another_cluster_or_a_stale_plan_is_refused_before_any_change() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");
    let plan = kubesweep_as(
        &["plan", "-o", plan_file.to_str().expect("utf-8")],
        &kubeconfig,
    );
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).expect("plan"))
            .expect("plan JSON");

    // Another cluster: same objects, different kube-system UID (re-signed, as
    // a plan made there would be).
    saved["cluster"]["kube_system_uid"] = json!("00000000-0000-0000-0000-000000000000");
    let foreign_plan = dir.path().join("other-cluster.json");
    std::fs::write(&foreign_plan, signed(saved.clone())).expect("write plan");
    let state = footprint_state(&client, &footprint).await;
    let refused = kubesweep_as(
        &["apply", foreign_plan.to_str().expect("utf-8"), "--yes"],
        &kubeconfig,
    );
    assert_eq!(refused.status.code(), Some(6), "{}", explain(&refused));
    assert!(
        stderr(&refused).contains("another cluster"),
        "{}",
        explain(&refused)
    );
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "refused plan changed the cluster"
    );

    // Stale: a planned object deleted and re-created under the same name since planning.
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let original = bindings
        .get("ks-core-post-delete")
        .await
        .expect("hook leftover seeded");
    bindings
        .delete("ks-core-post-delete", &DeleteParams::default())
        .await
        .expect("delete");
    let mut recreated = original.clone();
    recreated.metadata.uid = None;
    recreated.metadata.resource_version = None;
    recreated.metadata.creation_timestamp = None;
    recreated.metadata.managed_fields = None;
    let recreated = bindings
        .create(&PostParams::default(), &recreated)
        .await
        .expect("re-create");
    let state = footprint_state(&client, &footprint).await;
    let stale = kubesweep_as(
        &["apply", plan_file.to_str().expect("utf-8"), "--yes"],
        &kubeconfig,
    );
    assert_eq!(stale.status.code(), Some(6), "{}", explain(&stale));
    assert!(stderr(&stale).contains("stale"), "{}", explain(&stale));
    assert!(
        stderr(&stale).contains("ks-core-post-delete"),
        "{}",
        explain(&stale)
    );
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "stale plan changed the cluster"
    );
    assert_eq!(
        bindings
            .get("ks-core-post-delete")
            .await
            .expect("still there")
            .metadata
            .uid,
        recreated.metadata.uid
    );
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn a_platform_crd_created_after_the_plan_is_never_applied_unconfirmed() {
    // Between `plan -o` and `apply`, a CRD appears in a platform group: the
    // saved plan never named it, so the re-plan before the first change
    // must refuse (exit 6), and nothing may change: the API catalog that
    // re-plan reads must show the new group (a reused catalog would not).
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");
    let plan = kubesweep_as(&["plan", "-o", utf8(&plan_file)], &kubeconfig);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));

    let group = format!("{}.kubesphere.io", unique_name("late"));
    let name = format!("gizmos.{group}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("a CRD");
    let created = crds
        .create(&PostParams::default(), &crd)
        .await
        .expect("create the CRD");
    // Served (Established) before apply runs, as a CRD made minutes earlier would be.
    let mut established = false;
    for _ in 0..120 {
        let current = crds.get(&name).await.expect("read the CRD");
        established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(established, "the CRD {name} never became Established");
    let before = crds.get(&name).await.expect("read the CRD");
    assert_eq!(before.metadata.uid, created.metadata.uid);

    let state = footprint_state(&client, &footprint).await;
    let refused = kubesweep_as(&["apply", utf8(&plan_file), "--yes"], &kubeconfig);
    assert_eq!(refused.status.code(), Some(6), "{}", explain(&refused));
    assert!(
        stderr(&refused).contains("never confirmed") && stderr(&refused).contains(&name),
        "{}",
        explain(&refused)
    );
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "the refused plan changed the cluster"
    );
    let after = crds.get(&name).await.expect("the new CRD is still there");
    assert_eq!(
        (&after.metadata.uid, &after.metadata.resource_version),
        (&before.metadata.uid, &before.metadata.resource_version),
        "the new CRD was changed"
    );

    crds.delete(&name, &DeleteParams::default())
        .await
        .expect("remove the test CRD");
    reset(&client, &footprint).await;
}

/// A plan file's JSON with its digest recomputed for its content, as
/// `kubesweep plan -o` writes it: what someone who edits a plan and knows
/// the format could produce.
fn signed(mut plan: serde_json::Value) -> String {
    if let Some(map) = plan.as_object_mut() {
        map.remove("digest");
    }
    let typed: kubesweep::plan::Plan = serde_json::from_value(plan.clone()).expect("a plan");
    plan["digest"] = json!(format!("sha256:{}", typed.digest()));
    plan.to_string()
}

/// The first action in phase `phase` on an object of `kind` whose operation
/// has `propagation`.
fn action_in<'a>(
    plan: &'a serde_json::Value,
    phase: &str,
    kind: &str,
    propagation: &str,
) -> Option<&'a serde_json::Value> {
    plan["phases"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == phase)?["actions"]
        .as_array()?
        .iter()
        .find(|a| {
            a["target"]["resource"]["kind"] == kind
                && (a["operation"]["propagation"] == propagation
                    || propagation == "Background" && deleted_with_nothing_depending(a))
        })
}

/// A saved plan never does more than the profile proves at the time it runs:
/// an edited file is refused by its digest; a plan that has become too weak
/// (a Workspace it deletes in the Background gained a project since) is
/// refused after a fresh discovery; and an edit that got past the digest
/// (re-signed) adds nothing, because only what the fresh plan proves runs.
#[tokio::test]
async fn an_edited_or_outdated_plan_never_does_more_than_the_profile_proves_now() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_file = dir.path().join("plan.json");
    let plan = kubesweep_as(&["plan", "-o", utf8(&plan_file)], &kubeconfig);
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).expect("plan")).expect("JSON");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let user_ns = footprint.user_namespaces()[0].to_owned();
    let user_ns_before = namespaces.get(&user_ns).await.expect("user namespace");
    // An action that deletes the user's project namespace.
    let mut edited = saved.clone();
    let delete_user_ns = json!({
        "target": {"resource": {"group": "", "version": "v1", "kind": "Namespace", "plural": "namespaces", "namespaced": false},
                   "name": user_ns, "uid": user_ns_before.uid(), "resource_version": user_ns_before.resource_version()},
        "operation": {"type": "delete", "propagation": "Background"},
        "reason": "edited in", "destroys_data": true});
    edited["phases"]
        .as_array_mut()
        .expect("phases")
        .iter_mut()
        .find(|p| p["id"] == "namespaces")
        .expect("namespaces phase")["actions"]
        .as_array_mut()
        .expect("actions")
        .push(delete_user_ns);

    // (a) Edited, digest left as it was: refused before connecting.
    let state = footprint_state(&client, &footprint).await;
    let edited_file = dir.path().join("edited.json");
    std::fs::write(&edited_file, edited.to_string()).expect("write");
    let out = kubesweep_as(&["apply", utf8(&edited_file), "--yes"], &kubeconfig);
    assert_eq!(out.status.code(), Some(5), "{}", explain(&out));
    assert!(
        stderr(&out).contains("changed after it was made"),
        "{}",
        explain(&out)
    );
    assert_eq!(state, footprint_state(&client, &footprint).await);

    // (b) Since planning, a Workspace deleted in the Background gained a project.
    let workspace = action_in(&saved, "custom-resources", "Workspace", "Background")
        .or_else(|| {
            action_in(
                &saved,
                "custom-resources",
                "WorkspaceTemplate",
                "Background",
            )
        })
        .map(|a| a["target"].clone())
        .expect("a workspace nothing depends on yet");
    let late_name = unique_name("late-project");
    let late: Namespace = serde_json::from_value(json!({
        "metadata": {"name": late_name, "ownerReferences": [{
            "apiVersion": format!("{}/{}", workspace["resource"]["group"].as_str().expect("group"),
                                  workspace["resource"]["version"].as_str().expect("version")),
            "kind": workspace["resource"]["kind"], "name": workspace["name"], "uid": workspace["uid"]}]}
    }))
    .expect("namespace");
    let late = namespaces
        .create(&PostParams::default(), &late)
        .await
        .expect("create the late project");
    let state = footprint_state(&client, &footprint).await;
    let out = kubesweep_as(&["apply", utf8(&plan_file), "--yes"], &kubeconfig);
    assert_eq!(out.status.code(), Some(6), "{}", explain(&out));
    assert!(
        stderr(&out).contains("never confirmed"),
        "{}",
        explain(&out)
    );
    assert_eq!(state, footprint_state(&client, &footprint).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        namespaces
            .get(&late_name)
            .await
            .expect("late project kept")
            .uid(),
        late.uid()
    );
    // The user moves the project out of the Workspace again. (Deleting it
    // would not do: the footprint's dead APIService blocks every namespace
    // deletion until the plan removes it.)
    namespaces
        .patch(
            &late_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
        )
        .await
        .expect("release the late project");

    // (c) The same edit, re-signed: it runs, but deletes only what the
    // profile proves now, so the user's namespace survives.
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let resigned = dir.path().join("resigned.json");
    std::fs::write(&resigned, signed(edited)).expect("write");
    let out = kubesweep_as(&["apply", utf8(&resigned), "--yes"], &kubeconfig);
    assert_applied_clean(&out);
    assert!(stderr(&out).contains("left out"), "{}", explain(&out));
    assert_eq!(
        namespaces
            .get(&user_ns)
            .await
            .expect("user namespace kept")
            .uid(),
        user_ns_before.uid()
    );
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
    let _ = namespaces
        .delete(&late_name, &DeleteParams::default())
        .await;
}

/// A kubeconfig for a ServiceAccount that may only read.
async fn read_only_kubeconfig(client: &Client, dir: &Path) -> (PathBuf, String, String) {
    let name = unique_name("readonly");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &sa)
        .await
        .expect("service account");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]
    }))
    .expect("role");
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("cluster role");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": name}]
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let token: TokenRequest = accounts
        .create_token_request("reader", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("token request");
    let token = token.status.expect("token status").token;

    // Same server and CA as the admin kubeconfig, the token as the user.
    let admin: serde_json::Value = serde_json::to_value(
        kube::config::Kubeconfig::read_from(kubeconfig_path()).expect("admin kubeconfig"),
    )
    .expect("kubeconfig as JSON");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [{"name": "reader", "context": {"cluster": "test", "user": "reader"}}],
        "current-context": "reader"
    });
    let path = dir.join("reader.kubeconfig");
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    (path, name.clone(), name)
}

#[tokio::test]
async fn restricted_credentials_get_a_permission_error_before_any_change() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kubeconfig, namespace, rbac_name) = read_only_kubeconfig(&client, dir.path()).await;

    let state = footprint_state(&client, &footprint).await;
    let out = kubesweep_as(&["apply", "--yes"], &kubeconfig);
    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));
    let err = stderr(&out);
    assert!(
        err.contains("lack") && err.contains("delete"),
        "{}",
        explain(&out)
    );
    assert!(err.contains("nothing was changed"), "{}", explain(&out));
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "a refused apply changed the cluster"
    );

    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&rbac_name, &DeleteParams::default())
        .await
        .expect("cleanup");
    Api::<ClusterRole>::all(client.clone())
        .delete(&rbac_name, &DeleteParams::default())
        .await
        .expect("cleanup");
    Api::<Namespace>::all(client.clone())
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("cleanup");
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn apply_refuses_without_confirmation_and_over_the_blast_radius() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let state = footprint_state(&client, &footprint).await;

    // The test's stdin is not a terminal: without --yes there is nobody to ask.
    let out = kubesweep_as(&["apply"], &kubeconfig);
    assert_eq!(out.status.code(), Some(7), "{}", explain(&out));
    assert!(stderr(&out).contains("--yes"), "{}", explain(&out));

    let out = kubesweep_as(&["apply", "--yes", "--max-actions", "5"], &kubeconfig);
    assert_eq!(out.status.code(), Some(7), "{}", explain(&out));
    assert!(stderr(&out).contains("--allow-large"), "{}", explain(&out));

    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "a refused apply changed the cluster"
    );
    reset(&client, &footprint).await;
}

#[tokio::test]
async fn running_controllers_block_apply_until_stopped() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;

    // ks-core still half-installed: its controller Deployment runs (the
    // controller manager creates its ReplicaSet and pod).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kubesphere-system");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "ks-controller-manager", "namespace": "kubesphere-system"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "ks-controller-manager"}},
            "template": {
                "metadata": {"labels": {"app": "ks-controller-manager"}},
                "spec": {"containers": [{"name": "manager", "image": "kubesphere/ks-controller-manager:v4.1.3"}]}
            }
        }
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create controller");
    let mut has_pod = false;
    for _ in 0..100 {
        let d = deployments.get("ks-controller-manager").await.expect("get");
        if d.status.and_then(|s| s.replicas).unwrap_or(0) > 0 {
            has_pod = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        has_pod,
        "the deployment controller should have created a pod"
    );

    let state = footprint_state(&client, &footprint).await;
    let out = kubesweep_as(&["apply", "--yes"], &kubeconfig);
    assert_eq!(out.status.code(), Some(7), "{}", explain(&out));
    assert!(
        stderr(&out).contains("ks-controller-manager"),
        "{}",
        explain(&out)
    );
    assert_eq!(
        state,
        footprint_state(&client, &footprint).await,
        "a refused apply changed the cluster"
    );

    let out = kubesweep_as(&["apply", "--yes", "--stop-controllers"], &kubeconfig);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(
        stderr(&out).contains("stopping platform controllers"),
        "{}",
        explain(&out)
    );
    let gone = Api::<Namespace>::all(client.clone())
        .get_opt("kubesphere-system")
        .await
        .expect("get");
    assert!(
        gone.is_none(),
        "kubesphere-system is removed once its controllers stopped"
    );
    reset(&client, &footprint).await;
}
