//! Planner tests for ownership under ambiguity, namespaces: a namespace a
//! platform object merely names, pods holding a namespace's deletion, and
//! bindings left pointing at ServiceAccounts of deleted namespaces.

use super::test_support::*;
use super::*;
use crate::helm::{LiveObject, ObservedRelease};
use crate::inventory::{Inventory, ObservedList};
use crate::profile::Profile;
use crate::resource::ResourceType;
use kube::api::DynamicObject;
use serde_json::json;

fn ks() -> Profile {
    Profile::builtin("kubesphere").expect("builtin profile")
}

fn deleted_namespaces(p: &Plan) -> Vec<String> {
    p.phase(PhaseId::Namespaces)
        .map(|p| p.actions.iter().map(|a| a.target.name.clone()).collect())
        .unwrap_or_default()
}

fn core(kind: &str, plural: &str) -> ResourceType {
    rt("", "v1", kind, plural, true)
}

/// Adds `objects` of type `resource` to the listed content of `namespace`.
fn add_content(
    inv: &mut Inventory,
    namespace: &str,
    resource: ResourceType,
    objects: Vec<DynamicObject>,
) {
    let content = inv
        .namespace_contents
        .iter_mut()
        .find(|c| c.namespace == namespace)
        .expect("namespace content in the test inventory");
    content.objects.push(ObservedList { resource, objects });
}

fn skipped_reason(p: &Plan, subject: &str) -> Option<String> {
    p.findings.iter().find_map(|f| match f {
        Finding::Skipped { subject: s, reason } if s == subject => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn a_named_namespace_holding_only_kubernetes_defaults_is_deleted() {
    let p = plan(&ks(), &kubesphere_inventory(), &PlanOptions::default());
    assert!(deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()));
}

#[test]
fn a_named_namespace_holding_user_objects_is_kept_cleaned_and_explained() {
    let mut inv = kubesphere_inventory();
    add_content(
        &mut inv,
        "my-ext-ns",
        core("ConfigMap", "configmaps"),
        vec![obj(
            "v1",
            "ConfigMap",
            Some("my-ext-ns"),
            "user-cm",
            json!({}),
        )],
    );
    add_content(
        &mut inv,
        "my-ext-ns",
        core("Secret", "secrets"),
        vec![obj(
            "v1",
            "Secret",
            Some("my-ext-ns"),
            "user-secret",
            json!({}),
        )],
    );
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(!deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()));
    assert!(
        !p.actions()
            .any(|(_, a)| a.target.name == "my-ext-ns" && a.operation.deletes()),
        "no delete or finalize of my-ext-ns"
    );
    assert!(p.data_hazards.iter().all(|h| h.target.name != "my-ext-ns"));
    let reason = skipped_reason(&p, "namespace my-ext-ns").expect("a finding for my-ext-ns");
    assert!(reason.contains("InstallPlan my-ext"), "{reason}");
    assert!(reason.contains("ConfigMap my-ext-ns/user-cm"), "{reason}");
    assert!(reason.contains("Secret my-ext-ns/user-secret"), "{reason}");
    // Kubernetes' own defaults are nobody's content, so never quoted.
    assert!(!reason.contains("kube-root-ca.crt"), "{reason}");
    assert!(
        !reason.contains("ServiceAccount my-ext-ns/default"),
        "{reason}"
    );
}

#[test]
fn a_named_namespace_whose_content_could_not_be_listed_is_kept() {
    let mut inv = kubesphere_inventory();
    inv.namespace_contents[0]
        .gaps
        .push("cannot list widgets.acme.io in my-ext-ns: forbidden".into());
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(!deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()));
    let reason = skipped_reason(&p, "namespace my-ext-ns").expect("a finding");
    assert!(reason.contains("widgets.acme.io"), "{reason}");

    // Not listed at all: no proof either.
    let mut inv = kubesphere_inventory();
    inv.namespace_contents.clear();
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(!deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()));
    assert!(skipped_reason(&p, "namespace my-ext-ns").is_some());
}

#[test]
fn a_member_clusters_target_namespace_is_no_reason_to_delete_a_local_one() {
    let p = plan(&ks(), &kubesphere_inventory(), &PlanOptions::default());
    assert!(!p.actions().any(|(_, a)| a.target.name == "member-ns"));
    let candidates = namespaces_needing_content(&ks(), &kubesphere_inventory());
    assert_eq!(candidates, vec!["my-ext-ns".to_owned()]);
}

#[test]
fn objects_of_a_removed_release_and_what_they_own_are_the_platforms() {
    let mut inv = kubesphere_inventory();
    // InstallPlan my-ext names its release; the release lives in my-ext-ns.
    let plans = inv
        .crds
        .iter_mut()
        .find(|c| c.name() == "installplans.kubesphere.io")
        .expect("installplans");
    plans.instances[1].data["status"]["releaseName"] = json!("my-ext");
    // Annotated by Helm as the release's (without that, another proof).
    let deployment = obj(
        "apps/v1",
        "Deployment",
        Some("my-ext-ns"),
        "my-ext",
        json!({"metadata": {"annotations": {
            "meta.helm.sh/release-name": "my-ext",
            "meta.helm.sh/release-namespace": "my-ext-ns"}}}),
    );
    let record = obj(
        "v1",
        "Secret",
        Some("my-ext-ns"),
        "sh.helm.release.v1.my-ext.v1",
        json!({"metadata": {"labels": {"owner": "helm", "name": "my-ext"}}, "type": "helm.sh/release.v1"}),
    );
    inv.helm.releases.push(ObservedRelease {
        name: "my-ext".into(),
        namespace: "my-ext-ns".into(),
        revision: 1,
        status: "deployed".into(),
        records: vec![record.clone()],
        live: vec![LiveObject {
            resource: rt("apps", "v1", "Deployment", "deployments", true),
            object: deployment.clone(),
            chart_crd: false,
        }],
        ..Default::default()
    });
    let owned_by = |kind: &str, name: &str, uid: &str| {
        json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}]}})
    };
    let replica_set = obj(
        "apps/v1",
        "ReplicaSet",
        Some("my-ext-ns"),
        "my-ext-1",
        owned_by("Deployment", "my-ext", "uid-my-ext-ns-my-ext"),
    );
    let pod = obj(
        "v1",
        "Pod",
        Some("my-ext-ns"),
        "my-ext-1-x",
        owned_by("ReplicaSet", "my-ext-1", "uid-my-ext-ns-my-ext-1"),
    );
    let job = obj(
        "batch/v1",
        "Job",
        Some("my-ext-ns"),
        "helm-install-my-ext-abc",
        json!({"metadata": {"ownerReferences": [
            {"apiVersion": "kubesphere.io/v1alpha1", "kind": "InstallPlan", "name": "my-ext", "uid": "uid-my-ext"}]}}),
    );
    add_content(
        &mut inv,
        "my-ext-ns",
        rt("apps", "v1", "Deployment", "deployments", true),
        vec![deployment],
    );
    add_content(
        &mut inv,
        "my-ext-ns",
        rt("apps", "v1", "ReplicaSet", "replicasets", true),
        vec![replica_set],
    );
    add_content(&mut inv, "my-ext-ns", core("Pod", "pods"), vec![pod]);
    add_content(
        &mut inv,
        "my-ext-ns",
        core("Secret", "secrets"),
        vec![record],
    );
    add_content(
        &mut inv,
        "my-ext-ns",
        rt("batch", "v1", "Job", "jobs", true),
        vec![job],
    );
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(
        deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()),
        "{:?}",
        p.findings
    );

    // One object of someone else's, and the same namespace is kept.
    add_content(
        &mut inv,
        "my-ext-ns",
        core("ConfigMap", "configmaps"),
        vec![obj(
            "v1",
            "ConfigMap",
            Some("my-ext-ns"),
            "user-cm",
            json!({}),
        )],
    );
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(!deleted_namespaces(&p).contains(&"my-ext-ns".to_owned()));
    let reason = skipped_reason(&p, "namespace my-ext-ns").expect("a finding");
    assert!(reason.contains("ConfigMap my-ext-ns/user-cm"), "{reason}");
    assert!(!reason.contains("Pod"), "{reason}");
    // The release's objects still go, each on its own.
    assert!(p.actions().any(|(_, a)| a.target.name == "my-ext"
        && a.target.resource.kind == "Deployment"
        && a.operation.deletes()));
}

fn pod(ns: &str, name: &str, finalizers: &[&str]) -> DynamicObject {
    obj(
        "v1",
        "Pod",
        Some(ns),
        name,
        json!({"metadata": {"finalizers": finalizers}}),
    )
}

fn with_pods(pods: Vec<DynamicObject>) -> Inventory {
    let mut inv = kubesphere_inventory();
    inv.kept_objects.push(ObservedList {
        resource: core("Pod", "pods"),
        objects: pods,
    });
    inv
}

#[test]
fn platform_finalizers_on_pods_in_deleted_namespaces_are_stripped_foreign_ones_kept() {
    let inv = with_pods(vec![
        pod(
            "kubesphere-system",
            "held",
            &["kubesphere.io/hold", "acme.example.com/hold"],
        ),
        pod("project-a", "user-pod", &["kubesphere.io/hold"]),
    ]);
    let p = plan(&ks(), &inv, &PlanOptions::default());
    let on = |name: &str| -> Vec<(PhaseId, Operation)> {
        p.actions()
            .filter(|(_, a)| a.target.resource.kind == "Pod" && a.target.name == name)
            .map(|(id, a)| (id, a.operation.clone()))
            .collect()
    };
    assert_eq!(
        on("held"),
        vec![(
            PhaseId::Namespaces,
            Operation::StripMetadata {
                labels: vec![],
                annotations: vec![],
                finalizers: vec!["kubesphere.io/hold".into()],
                owner_reference_uids: vec![],
            }
        )]
    );
    // In a kept namespace the pod is a kept object, cleaned before owners go.
    assert_eq!(on("user-pod").len(), 1);
    assert_eq!(on("user-pod")[0].0, PhaseId::KeptObjects);
    // Never a delete of a pod: the namespace controller does that.
    assert!(
        !p.actions()
            .any(|(_, a)| a.target.resource.kind == "Pod" && a.operation.deletes())
    );
}

fn binding(
    kind: &str,
    ns: Option<&str>,
    name: &str,
    labels: serde_json::Value,
    subjects: serde_json::Value,
) -> DynamicObject {
    obj(
        "rbac.authorization.k8s.io/v1",
        kind,
        ns,
        name,
        json!({"metadata": {"labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": subjects}),
    )
}

fn dangling(p: &Plan) -> Vec<(String, Vec<String>, bool)> {
    p.findings
        .iter()
        .filter_map(|f| match f {
            Finding::DanglingBinding {
                target,
                subjects,
                removed,
                role,
            } => {
                assert_eq!(role, "ClusterRole/cluster-admin");
                Some((target.name.clone(), subjects.clone(), *removed))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn bindings_to_service_accounts_of_deleted_namespaces_are_reported_and_removed_when_the_platforms()
{
    let sa =
        |ns: &str, name: &str| json!({"kind": "ServiceAccount", "namespace": ns, "name": name});
    let mut inv = kubesphere_inventory();
    inv.cluster_role_bindings = vec![
        binding(
            "ClusterRoleBinding",
            None,
            "acme-reader",
            json!({}),
            json!([sa("kubesphere-system", "acme-sa"), sa("acme", "acme-sa")]),
        ),
        binding(
            "ClusterRoleBinding",
            None,
            "ks-extension-binding",
            json!({"kubesphere.io/extension-ref": "whizard"}),
            json!([sa("extension-whizard", "whizard")]),
        ),
        binding(
            "ClusterRoleBinding",
            None,
            "kept-ns-only",
            json!({}),
            json!([sa("project-a", "app")]),
        ),
        binding(
            "ClusterRoleBinding",
            None,
            "users-only",
            json!({}),
            json!([{"kind": "User", "name": "kubesphere-system"}]),
        ),
    ];
    inv.role_bindings = vec![
        binding(
            "RoleBinding",
            Some("project-a"),
            "reads-platform",
            json!({}),
            json!([sa("kubesphere-system", "ks-apiserver")]),
        ),
        // No namespace: the binding's own (kept) namespace.
        binding(
            "RoleBinding",
            Some("project-a"),
            "local",
            json!({}),
            json!([{"kind": "ServiceAccount", "name": "app"}]),
        ),
        // Inside a deleted namespace: goes with it.
        binding(
            "RoleBinding",
            Some("kubesphere-system"),
            "inside",
            json!({}),
            json!([sa("kubesphere-system", "x")]),
        ),
    ];
    let p = plan(&ks(), &inv, &PlanOptions::default());
    let mut found = dangling(&p);
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                "acme-reader".to_owned(),
                vec!["ServiceAccount kubesphere-system/acme-sa".to_owned()],
                false
            ),
            (
                "ks-extension-binding".to_owned(),
                vec!["ServiceAccount extension-whizard/whizard".to_owned()],
                true
            ),
            (
                "reads-platform".to_owned(),
                vec!["ServiceAccount kubesphere-system/ks-apiserver".to_owned()],
                false
            ),
        ]
    );
    let deletes = |name: &str| {
        p.actions()
            .any(|(_, a)| a.target.name == name && a.operation.deletes())
    };
    assert!(deletes("ks-extension-binding"));
    assert!(!deletes("acme-reader"));
    assert!(!deletes("reads-platform"));
    let severity = p
        .findings
        .iter()
        .find(|f| matches!(f, Finding::DanglingBinding { removed: false, .. }))
        .map(Finding::severity);
    assert_eq!(severity, Some(Severity::Warning));
}
