//! Planner tests: ordering, protection and proof invariants on a realistic
//! inventory with decoys.

use super::test_support::*;
use super::*;
use crate::inventory::{ClusterIdentity, DiscoveryIssue, Inventory, ObservedList};
use crate::profile::Profile;
use kube::api::DynamicObject;
use serde_json::json;

fn ks() -> Profile {
    Profile::builtin("kubesphere").expect("builtin profile")
}

fn full_plan() -> Plan {
    plan(&ks(), &kubesphere_inventory(), &PlanOptions::default())
}

/// Position (phase index, action) of the first action on `name` of `kind`.
fn position(plan: &Plan, kind: &str, name: &str, verb_deletes: bool) -> Option<usize> {
    plan.actions().position(|(_, a)| {
        a.target.resource.kind == kind
            && a.target.name == name
            && (a.operation.deletes() == verb_deletes)
    })
}

fn phase_of(plan: &Plan, kind: &str, name: &str) -> Vec<PhaseId> {
    plan.actions()
        .filter(|(_, a)| a.target.resource.kind == kind && a.target.name == name)
        .map(|(p, _)| p)
        .collect()
}

fn phase_names(plan: &Plan, id: PhaseId) -> Vec<String> {
    plan.phase(id)
        .map(|p| p.actions.iter().map(|a| a.target.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn empty_inventory_plans_nothing() {
    let inv = Inventory::empty(ClusterIdentity {
        kube_system_uid: "u".into(),
        ..Default::default()
    });
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert_eq!(p.total_actions(), 0);
    assert!(p.is_empty());
    assert!(p.findings.is_empty());
    assert!(p.data_hazards.is_empty());
    assert_eq!(p.phases.len(), PhaseId::ALL.len());
    assert_eq!(p.schema_version, 2);
}

#[test]
fn clean_cluster_with_only_foreign_objects_plans_nothing() {
    let mut inv = kubesphere_inventory();
    inv.crds
        .retain(|c| c.group().ends_with("example.com") || c.group() == "notkubesphere.io");
    inv.namespaces.retain(|n| {
        matches!(
            n.metadata.name.as_deref(),
            Some("kube-public" | "notkubesphere" | "extension-custom")
        )
    });
    inv.validating_webhooks
        .retain(|w| w.metadata.name.as_deref() == Some("acme-validator"));
    inv.mutating_webhooks
        .retain(|w| w.metadata.name.as_deref() == Some("acme-mutator"));
    inv.api_services
        .retain(|a| a.metadata.name.as_deref() != Some("v1alpha1.whizard.example.com"));
    inv.cluster_roles.retain(|r| {
        matches!(
            r.metadata.name.as_deref(),
            Some("acme-kubesphere-exporter" | "customer-role" | "cluster-admin")
        )
    });
    inv.cluster_role_bindings.retain(|r| {
        matches!(
            r.metadata.name.as_deref(),
            Some("acme-admin" | "cluster-admin")
        )
    });
    inv.roles.clear();
    inv.csrs
        .retain(|c| c.metadata.name.as_deref() == Some("node-csr-1"));
    inv.controllers.clear();
    inv.kept_objects.clear();
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert_eq!(
        p.total_actions(),
        0,
        "{}",
        crate::render::render_plan(&p, crate::render::Detail::Details)
    );
}

#[test]
fn phases_come_in_design_order() {
    let p = full_plan();
    let ids: Vec<PhaseId> = p.phases.iter().map(|p| p.id).collect();
    assert_eq!(ids, PhaseId::ALL.to_vec());
    assert!(
        p.phase(PhaseId::Preflight)
            .is_some_and(|p| p.actions.is_empty())
    );
    assert!(
        p.phase(PhaseId::HelmReleases)
            .is_some_and(|p| p.actions.is_empty())
    );
}

#[test]
fn webhooks_before_custom_resources_and_crds() {
    let p = full_plan();
    let webhook = position(
        &p,
        "ValidatingWebhookConfiguration",
        "resourcesquotas.quota.kubesphere.io",
        true,
    )
    .expect("webhook deleted");
    let mutating = position(
        &p,
        "MutatingWebhookConfiguration",
        "serviceaccount.kubesphere.io",
        true,
    )
    .expect("mutating webhook deleted");
    let user = position(&p, "User", "admin", true).expect("user deleted");
    assert!(webhook < mutating && mutating < user);
}

#[test]
fn kept_namespace_loses_workspace_owner_before_workspace_and_crd_deletion() {
    let p = full_plan();
    let strip = position(&p, "Namespace", "project-a", false).expect("project cleaned");
    let ws = position(&p, "Workspace", "ws1", true).expect("workspace deleted");
    let crd = position(
        &p,
        "CustomResourceDefinition",
        "workspaces.tenant.kubesphere.io",
        true,
    )
    .expect("crd deleted");
    assert!(strip < ws && ws < crd);
    assert_eq!(
        phase_of(&p, "Namespace", "project-a"),
        vec![PhaseId::KeptObjects]
    );
    let action = p
        .actions()
        .find(|(_, a)| a.target.name == "project-a")
        .map(|(_, a)| a);
    let Some(Action {
        operation:
            Operation::StripMetadata {
                labels,
                annotations,
                finalizers,
                owner_reference_uids,
            },
        ..
    }) = action
    else {
        panic!("project-a should be stripped, got {action:?}");
    };
    assert_eq!(
        labels,
        &["kubesphere.io/managed", "kubesphere.io/workspace"]
    );
    assert_eq!(annotations, &["kubesphere.io/creator"]);
    assert_eq!(finalizers, &["finalizers.kubesphere.io/namespaces"]);
    assert_eq!(owner_reference_uids, &["uid-ws1"]);
}

#[test]
fn crds_after_their_instances_and_namespaces_last() {
    let p = full_plan();
    let user = position(&p, "User", "admin", true).expect("user");
    let crd = position(
        &p,
        "CustomResourceDefinition",
        "users.iam.kubesphere.io",
        true,
    )
    .expect("crd");
    assert!(user < crd);
    let last_non_ns = p
        .actions()
        .enumerate()
        .filter(|(_, (_, a))| a.target.resource.kind != "Namespace")
        .map(|(i, _)| i)
        .max()
        .expect("actions");
    let first_ns_delete = position(&p, "Namespace", "kubesphere-system", true).expect("ns delete");
    assert!(last_non_ns < first_ns_delete);
}

#[test]
fn conversion_webhook_disabled_before_crd_delete() {
    let p = full_plan();
    assert_eq!(
        phase_of(&p, "CustomResourceDefinition", "users.iam.kubesphere.io"),
        vec![PhaseId::CrdConversion, PhaseId::Crds]
    );
    assert_eq!(
        phase_names(&p, PhaseId::CrdConversion),
        vec!["users.iam.kubesphere.io"]
    );
}

#[test]
fn system_namespaces_never_deleted_or_finalized() {
    let p = full_plan();
    for (_, a) in p.actions() {
        if a.target.resource.kind == "Namespace"
            && crate::profile::ALWAYS_PROTECTED_NAMESPACES.contains(&a.target.name.as_str())
        {
            assert!(
                matches!(a.operation, Operation::StripMetadata { .. }),
                "{} got {:?}",
                a.target.name,
                a.operation
            );
        }
    }
    let default = p
        .actions()
        .find(|(_, a)| a.target.name == "default")
        .map(|(_, a)| a.operation.clone());
    assert_eq!(
        default,
        Some(Operation::StripMetadata {
            labels: vec![
                "kubesphere.io/managed".into(),
                "kubesphere.io/protected-resource".into(),
                "kubesphere.io/workspace".into()
            ],
            annotations: vec!["cluster.kubesphere.io/name".into()],
            finalizers: vec!["kubesphere.io/cascading-deletion".into()],
            owner_reference_uids: vec![],
        })
    );
}

#[test]
fn protected_namespaces_survive_even_a_hostile_profile() {
    // A profile cannot list them for deletion (validation), and a protected
    // name that slipped into the inventory as a platform namespace is still
    // filtered out by the final guard.
    let mut profile = ks();
    profile.namespaces.delete.push("kube-system".into());
    let p = plan(&profile, &kubesphere_inventory(), &PlanOptions::default());
    assert_eq!(
        phase_of(&p, "Namespace", "kube-system"),
        vec![PhaseId::KeptObjects]
    );
}

/// (labels, annotations, finalizers, owner reference UIDs) an action removes.
fn removed(op: &Operation) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    match op {
        Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        } => (
            labels.clone(),
            annotations.clone(),
            finalizers.clone(),
            owner_reference_uids.clone(),
        ),
        Operation::StripFinalizersThenDelete { finalizers, .. } => {
            (vec![], vec![], finalizers.clone(), vec![])
        }
        _ => Default::default(),
    }
}

#[test]
fn foreign_metadata_never_stripped() {
    let p = full_plan();
    for (_, a) in p.actions() {
        let (labels, annotations, finalizers, uids) = removed(&a.operation);
        for f in &finalizers {
            assert!(
                !f.contains("acme") && !f.starts_with("notkubesphere"),
                "{f} on {}",
                a.target
            );
        }
        for l in labels.iter().chain(&annotations) {
            assert!(
                !l.starts_with("acme") && l != "team" && l != "app",
                "{l} on {}",
                a.target
            );
        }
        assert!(!uids.contains(&"uid-team".to_owned()));
        assert!(!uids.contains(&"uid-project-a-their-app".to_owned()));
    }
    // Objects with only foreign metadata get no action at all.
    assert!(phase_of(&p, "Namespace", "notkubesphere").is_empty());
    assert!(phase_of(&p, "Deployment", "theirs").is_empty());
    // `kubesphere.io/managed` is only removed from namespaces: on other objects
    // it may be the customer's own label (kubesphere#6361).
    assert!(phase_of(&p, "ConfigMap", "customer").is_empty());
}

#[test]
fn user_workload_loses_only_the_platform_application_owner() {
    let p = full_plan();
    let web = p
        .actions()
        .find(|(_, a)| a.target.name == "web")
        .map(|(phase, a)| (phase, removed(&a.operation)));
    assert_eq!(
        web,
        Some((
            PhaseId::KeptObjects,
            (
                vec![],
                vec!["kubesphere.io/creator".to_owned()],
                vec![],
                vec!["uid-project-a-ks-app".to_owned()]
            )
        ))
    );
}

#[test]
fn foreign_finalizers_on_platform_objects_are_kept_and_reported() {
    let p = full_plan();
    let user = p
        .actions()
        .find(|(_, a)| a.target.name == "admin" && a.target.resource.kind == "User");
    assert_eq!(
        user.map(|(_, a)| a.operation.clone()),
        Some(Operation::StripFinalizersThenDelete {
            finalizers: vec!["finalizers.kubesphere.io/users".into()],
            propagation: Propagation::Orphan,
        })
    );
    assert!(p.findings.iter().any(|f| matches!(f,
        Finding::Skipped { subject, .. } if subject.contains("acme.example.com/audit"))));
}

#[test]
fn proof_is_required_for_namespaces() {
    let p = full_plan();
    let deleted = phase_names(&p, PhaseId::Namespaces);
    assert_eq!(
        deleted,
        vec![
            "extension-whizard",
            "kubesphere-controls-system",
            "kubesphere-system",
            "my-ext-ns"
        ]
    );
    assert_eq!(phase_names(&p, PhaseId::NamespaceFinalize), deleted);
    assert!(
        p.actions()
            .all(|(_, a)| a.target.name != "extension-custom")
    );
    for (_, a) in p.actions().filter(|(id, _)| *id == PhaseId::Namespaces) {
        assert!(a.destroys_data);
        assert!(!a.reason.is_empty());
    }
    assert_eq!(p.data_hazards.len(), 4);
    let reason = p
        .actions()
        .find(|(id, a)| *id == PhaseId::Namespaces && a.target.name == "my-ext-ns")
        .map(|(_, a)| a.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("InstallPlan my-ext"), "{reason}");
}

#[test]
fn platform_namespace_with_platform_finalizer_is_stripped_then_deleted() {
    let p = full_plan();
    let op = p
        .actions()
        .find(|(id, a)| *id == PhaseId::Namespaces && a.target.name == "kubesphere-system")
        .map(|(_, a)| a.operation.clone());
    assert_eq!(
        op,
        Some(Operation::StripFinalizersThenDelete {
            finalizers: vec!["kubesphere.io/cascading-deletion".into()],
            propagation: Propagation::Background
        })
    );
}

#[test]
fn finalize_is_optional() {
    let options = PlanOptions {
        finalize_stuck_namespaces: false,
        ..PlanOptions::default()
    };
    let p = plan(&ks(), &kubesphere_inventory(), &options);
    assert!(phase_names(&p, PhaseId::NamespaceFinalize).is_empty());
}

#[test]
fn keep_namespace_option_cleans_instead_of_deleting() {
    let options = PlanOptions {
        keep_namespaces: vec!["kubesphere-system".into()],
        ..PlanOptions::default()
    };
    let p = plan(&ks(), &kubesphere_inventory(), &options);
    assert_eq!(
        phase_of(&p, "Namespace", "kubesphere-system"),
        vec![PhaseId::KeptObjects]
    );
}

#[test]
fn shared_crd_kept_when_a_foreign_instance_exists() {
    for include in [false, true] {
        let options = PlanOptions {
            include_shared_crds: include,
            ..PlanOptions::default()
        };
        let p = plan(&ks(), &kubesphere_inventory(), &options);
        assert!(phase_of(&p, "CustomResourceDefinition", "applications.app.k8s.io").is_empty());
        let finding = p.findings.iter().find_map(|f| match f {
            Finding::SharedCrdKept {
                crd,
                foreign_instances,
                ..
            } if crd == "applications.app.k8s.io" => Some(foreign_instances.clone()),
            _ => None,
        });
        assert_eq!(finding, Some(vec!["project-a/their-app".to_owned()]));
        // The platform's own instances go; the foreign one stays.
        let apps = phase_names(&p, PhaseId::CustomResources);
        assert!(apps.contains(&"console".to_owned()) && apps.contains(&"ks-app".to_owned()));
        assert!(!apps.contains(&"their-app".to_owned()));
    }
}

#[test]
fn shared_crd_removed_only_when_included_and_unused_by_others() {
    let mut inv = kubesphere_inventory();
    for crd in &mut inv.crds {
        crd.instances
            .retain(|i| i.metadata.name.as_deref() != Some("their-app"));
    }
    let default = plan(&ks(), &inv, &PlanOptions::default());
    assert!(
        phase_of(
            &default,
            "CustomResourceDefinition",
            "applications.app.k8s.io"
        )
        .is_empty()
    );
    let included = plan(
        &ks(),
        &inv,
        &PlanOptions {
            include_shared_crds: true,
            ..PlanOptions::default()
        },
    );
    assert_eq!(
        phase_of(
            &included,
            "CustomResourceDefinition",
            "applications.app.k8s.io"
        ),
        vec![PhaseId::Crds]
    );
    // Unlisted instances: foreign use cannot be ruled out.
    for crd in &mut inv.crds {
        crd.instances_listed = false;
    }
    let unlisted = plan(
        &ks(),
        &inv,
        &PlanOptions {
            include_shared_crds: true,
            ..PlanOptions::default()
        },
    );
    assert!(
        phase_of(
            &unlisted,
            "CustomResourceDefinition",
            "applications.app.k8s.io"
        )
        .is_empty()
    );
}

#[test]
fn foreign_crds_on_lookalike_groups_untouched() {
    let p = full_plan();
    for name in [
        "widgets.notkubesphere.io",
        "things.kubesphere.io.example.com",
    ] {
        assert!(
            phase_of(&p, "CustomResourceDefinition", name).is_empty(),
            "{name}"
        );
    }
    assert!(phase_of(&p, "Widget", "w").is_empty());
}

#[test]
fn webhooks_by_name_service_or_deleted_namespace_and_mixed_ones_skipped() {
    let p = full_plan();
    assert_eq!(
        phase_names(&p, PhaseId::ValidatingWebhooks),
        vec![
            "ext-validator",
            "resourcesquotas.quota.kubesphere.io",
            "users.iam.kubesphere.io"
        ]
    );
    assert_eq!(
        phase_names(&p, PhaseId::MutatingWebhooks),
        vec!["serviceaccount.kubesphere.io"]
    );
    assert!(p.findings.iter().any(|f| matches!(f,
        Finding::Skipped { subject, .. } if subject.contains("mixed-hooks"))));
}

#[test]
fn api_services_only_when_backed_by_a_deleted_namespace() {
    let p = full_plan();
    assert_eq!(
        phase_names(&p, PhaseId::ApiServices),
        vec!["v1alpha1.whizard.example.com"]
    );
    assert!(p.findings.iter().any(|f| matches!(f,
        Finding::ApiGroupUnavailable { group_version, .. } if group_version == "acme.io/v1")));
}

#[test]
fn rbac_and_csrs_need_proof() {
    let p = full_plan();
    let mut names = phase_names(&p, PhaseId::ClusterLeftovers);
    names.sort();
    assert_eq!(
        names,
        vec![
            "admin-cluster-admin",
            "admin-csr-1",
            "ks-core-post-delete",
            "kubesphere",
            "kubesphere:iam:platform-admin",
            "kubesphere:whizard:helm-executor",
            "mirrored",
            "project-viewer",
        ]
    );
    // Exact cluster-scoped names do not prove namespaced Roles.
    assert!(
        p.actions()
            .all(|(_, a)| !(a.target.resource.kind == "Role" && a.target.name == "kubesphere"))
    );
}

#[test]
fn preflight_facts_reported() {
    let p = full_plan();
    let running: Vec<_> = p
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::ControllerRunning { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(running, vec!["ks-controller-manager"]);
    let stuck = p.findings.iter().find_map(|f| match f {
        Finding::NamespaceTerminating {
            name,
            conditions,
            finalizers,
        } => Some((name.clone(), conditions.clone(), finalizers.clone())),
        _ => None,
    });
    assert_eq!(
        stuck,
        Some((
            "kubesphere-controls-system".into(),
            vec![
                "NamespaceContentRemaining: users.iam.kubesphere.io has 1 resource instances"
                    .into()
            ],
            vec!["kubernetes".into()]
        ))
    );
}

#[test]
fn every_action_says_why_and_is_bound_to_a_uid() {
    let p = full_plan();
    assert!(p.total_actions() > 20);
    for (_, a) in p.actions() {
        assert!(!a.reason.is_empty(), "{}", a.target);
        assert!(a.target.uid.starts_with("uid-"), "{}", a.target);
        assert_eq!(a.target.resource_version, "1");
    }
    assert_eq!(p.counts.actions, p.total_actions());
    assert_eq!(
        p.counts.deletes + p.counts.metadata_strips + p.counts.other,
        p.counts.actions
    );
}

#[test]
fn json_round_trip_and_stable_schema() {
    let p = full_plan();
    let text = serde_json::to_string_pretty(&p).expect("serialise");
    let back: Plan = serde_json::from_str(&text).expect("deserialise");
    assert_eq!(back, p);
    assert_eq!(back.digest(), p.digest());
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["schema_version"], json!(2));
    assert_eq!(value["phases"][0]["id"], json!("preflight"));
    let strip = value["phases"]
        .as_array()
        .and_then(|phases| phases.iter().find(|p| p["id"] == json!("kept-objects")))
        .map(|p| p["actions"][0]["operation"]["type"].clone());
    assert_eq!(strip, Some(json!("stripMetadata")));
}

#[test]
fn canonical_json_written_action_by_action_is_the_whole_plan_through_value() {
    let p = full_plan();
    assert!(p.phases.iter().filter(|ph| ph.actions.len() > 1).count() > 1);
    let value = serde_json::to_value(&p).expect("value");
    let whole = serde_json::to_vec(&value).expect("bytes");
    assert_eq!(
        String::from_utf8_lossy(&p.canonical_json()),
        String::from_utf8_lossy(&whole)
    );
    let empty = Plan {
        phases: Vec::new(),
        ..p.clone()
    };
    let whole = serde_json::to_vec(&serde_json::to_value(&empty).expect("value")).expect("bytes");
    assert_eq!(empty.canonical_json(), whole);
}

#[test]
fn digest_is_stable_and_content_sensitive() {
    let a = full_plan();
    let b = full_plan();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 64);
    let mut inv = kubesphere_inventory();
    inv.csrs.clear();
    let c = plan(&ks(), &inv, &PlanOptions::default());
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn inventory_round_trips_through_json() {
    let inv = kubesphere_inventory();
    let text = serde_json::to_string(&inv).expect("serialise");
    let back: Inventory = serde_json::from_str(&text).expect("deserialise");
    let p1 = plan(&ks(), &inv, &PlanOptions::default());
    let p2 = plan(&ks(), &back, &PlanOptions::default());
    assert_eq!(p1, p2);
}

#[test]
fn values_at_path_walks_maps_and_lists() {
    let v = json!({"status": {"targetNamespace": "a", "m": {"x": {"t": "b"}, "y": {"t": "c"}}, "l": [{"t": "d"}]}});
    assert_eq!(
        planner::values_at_path(&v, "status.targetNamespace"),
        vec!["a"]
    );
    assert_eq!(planner::values_at_path(&v, "status.m.*.t"), vec!["b", "c"]);
    assert_eq!(planner::values_at_path(&v, "status.l.*.t"), vec!["d"]);
    assert!(planner::values_at_path(&v, "status.missing").is_empty());
}

#[test]
fn object_deleted_elsewhere_is_not_also_stripped() {
    let mut inv = kubesphere_inventory();
    // Discovery's metadata scan also reports the proven Role and the
    // platform Application, because they carry platform metadata.
    let role = inv
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("project-viewer"))
        .cloned()
        .map(|mut r| {
            r.metadata.annotations =
                Some([("kubesphere.io/creator".to_owned(), "admin".to_owned())].into());
            r
        });
    let app = inv
        .crds
        .iter()
        .flat_map(|c| &c.instances)
        .find(|i| i.metadata.name.as_deref() == Some("ks-app"))
        .cloned();
    inv.kept_objects.push(crate::inventory::ObservedList {
        resource: rt("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        objects: role.into_iter().collect(),
    });
    inv.kept_objects.push(crate::inventory::ObservedList {
        resource: rt("app.k8s.io", "v1beta1", "Application", "applications", true),
        objects: app.into_iter().collect(),
    });
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert_eq!(
        phase_of(&p, "Role", "project-viewer"),
        vec![PhaseId::ClusterLeftovers]
    );
    assert_eq!(
        phase_of(&p, "Application", "ks-app"),
        vec![PhaseId::CustomResources]
    );
}

// --keep-data and the helm executor's leftovers.

fn claim(ns: &str, name: &str) -> DynamicObject {
    obj("v1", "PersistentVolumeClaim", Some(ns), name, json!({}))
}

/// The test inventory with a claim in the extension namespace `extension-whizard`.
fn inventory_with_claim() -> Inventory {
    let mut inv = kubesphere_inventory();
    inv.volume_claims = vec![claim("extension-whizard", "data-whizard-0")];
    inv
}

fn keep_data() -> PlanOptions {
    PlanOptions {
        keep_data: true,
        ..PlanOptions::default()
    }
}

fn hazard_of(p: &Plan, namespace: &str) -> Option<String> {
    p.data_hazards
        .iter()
        .find(|h| h.target.resource.kind == "Namespace" && h.target.name == namespace)
        .map(|h| h.description.clone())
}

#[test]
fn keep_data_keeps_a_namespace_holding_a_claim_and_deletes_one_without() {
    let p = plan(&ks(), &inventory_with_claim(), &keep_data());
    let deleted = phase_names(&p, PhaseId::Namespaces);
    assert!(
        !deleted.contains(&"extension-whizard".to_owned()),
        "{deleted:?}"
    );
    assert!(deleted.contains(&"my-ext-ns".to_owned()), "{deleted:?}");
    assert!(!phase_names(&p, PhaseId::NamespaceFinalize).contains(&"extension-whizard".to_owned()));
    assert_eq!(hazard_of(&p, "extension-whizard"), None);
    // Cleaned like any kept namespace, and the plan says why it stays.
    let strip = p
        .actions()
        .find(|(_, a)| {
            a.target.resource.kind == "Namespace" && a.target.name == "extension-whizard"
        })
        .map(|(id, a)| (id, a.operation.clone(), a.reason.clone()));
    let Some((phase, Operation::StripMetadata { labels, .. }, reason)) = strip else {
        panic!("extension-whizard is not cleaned: {strip:?}");
    };
    assert_eq!(phase, PhaseId::KeptObjects);
    assert_eq!(labels, vec!["kubesphere.io/extension-ref".to_owned()]);
    assert!(
        reason
            .contains("holds PersistentVolumeClaims data-whizard-0: kept on request (--keep-data)"),
        "{reason}"
    );
    assert!(p.findings.iter().any(|f| matches!(f,
        Finding::Skipped { subject, reason } if subject == "namespace extension-whizard"
            && reason.contains("--keep-data"))));
    // Still the platform's namespace: what calls its services goes.
    assert_eq!(
        phase_of(&p, "ValidatingWebhookConfiguration", "ext-validator"),
        vec![PhaseId::ValidatingWebhooks]
    );
    assert_eq!(
        phase_of(&p, "APIService", "v1alpha1.whizard.example.com"),
        vec![PhaseId::ApiServices]
    );
    // Without the flag, the same inventory deletes it.
    let default = plan(&ks(), &inventory_with_claim(), &PlanOptions::default());
    assert!(phase_names(&default, PhaseId::Namespaces).contains(&"extension-whizard".to_owned()));
}

#[test]
fn the_namespace_hazard_names_the_claims_it_destroys() {
    let mut inv = inventory_with_claim();
    inv.volume_claims
        .push(claim("extension-whizard", "data-whizard-1"));
    inv.volume_claims.push(claim("project-a", "user-data"));
    let p = plan(&ks(), &inv, &PlanOptions::default());
    let hazard = hazard_of(&p, "extension-whizard").unwrap_or_default();
    assert!(
        hazard.contains("2 PersistentVolumeClaim(s) data-whizard-0, data-whizard-1"),
        "{hazard}"
    );
    assert!(hazard.contains("--keep-data"), "{hazard}");
    let without = hazard_of(&p, "my-ext-ns").unwrap_or_default();
    assert!(
        without.contains("holds no PersistentVolumeClaim"),
        "{without}"
    );
    // A kept user project's claim is no hazard.
    assert_eq!(hazard_of(&p, "project-a"), None);
}

#[test]
fn keep_data_keeps_every_platform_namespace_when_claims_cannot_be_listed() {
    let mut inv = kubesphere_inventory();
    inv.issues.push(DiscoveryIssue::ListFailed {
        resource: "persistentvolumeclaims".into(),
        namespace: None,
        message: "forbidden".into(),
    });
    let p = plan(&ks(), &inv, &keep_data());
    assert!(phase_names(&p, PhaseId::Namespaces).is_empty());
    assert!(phase_names(&p, PhaseId::NamespaceFinalize).is_empty());
    let reason = p
        .actions()
        .find(|(_, a)| {
            a.target.resource.kind == "Namespace" && a.target.name == "extension-whizard"
        })
        .map(|(_, a)| a.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("could not be listed (forbidden)"),
        "{reason}"
    );
    // Without --keep-data they are deleted, and the hazard says what is unknown.
    let default = plan(&ks(), &inv, &PlanOptions::default());
    assert!(phase_names(&default, PhaseId::Namespaces).contains(&"extension-whizard".to_owned()));
    let hazard = hazard_of(&default, "extension-whizard").unwrap_or_default();
    assert!(hazard.contains("could not be listed"), "{hazard}");
}

#[test]
fn old_plans_without_keep_data_still_load() {
    let options: PlanOptions = serde_json::from_value(json!({
        "include_shared_crds": false,
        "finalize_stuck_namespaces": true,
        "keep_namespaces": []
    }))
    .expect("an options object saved before --keep-data");
    assert!(!options.keep_data);
}

/// Executor leftovers in `extension-whizard` (extension `whizard`) and
/// look-alikes that are not the executor's.
fn inventory_with_executor_leftovers() -> Inventory {
    let mut inv = inventory_with_claim();
    let ns = Some("extension-whizard");
    let exec_labels =
        json!({"kubesphere.io/managed": "true", "kubesphere.io/extension-ref": "whizard"});
    let installplan = json!([{"apiVersion": "kubesphere.io/v1alpha1", "kind": "InstallPlan",
                              "name": "whizard", "uid": "uid-whizard"}]);
    let list = |kind: &str, plural: &str, group: &str, objects| ObservedList {
        resource: rt(group, "v1", kind, plural, true),
        objects,
    };
    let api = |group: &str| {
        if group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{group}/v1")
        }
    };
    let o = |group: &str, kind: &str, name: &str, meta: serde_json::Value| {
        obj(&api(group), kind, ns, name, json!({"metadata": meta}))
    };
    inv.kept_objects.push(list(
        "Job",
        "jobs",
        "batch",
        vec![
            o(
                "batch",
                "Job",
                "helm-install-whizard-abc123",
                json!({"labels": exec_labels, "ownerReferences": installplan}),
            ),
            // A customer's job that only shares the ambiguous label.
            o(
                "batch",
                "Job",
                "helm-install-whizard-mine",
                json!({"labels": {"kubesphere.io/managed": "true"}}),
            ),
        ],
    ));
    inv.kept_objects.push(list(
        "ConfigMap",
        "configmaps",
        "",
        vec![
            o(
                "",
                "ConfigMap",
                "helm-install-whizard-abc123",
                json!({"labels": exec_labels}),
            ),
            o(
                "",
                "ConfigMap",
                "helm-uninstall-whizard-def456",
                json!({"ownerReferences": installplan}),
            ),
            o(
                "",
                "ConfigMap",
                "customer-settings",
                json!({"labels": {"kubesphere.io/managed": "true"}}),
            ),
            // Right labels, but not an executor name.
            o(
                "",
                "ConfigMap",
                "whizard-values",
                json!({"labels": exec_labels}),
            ),
        ],
    ));
    inv.kept_objects.push(list(
        "ServiceAccount",
        "serviceaccounts",
        "",
        vec![
            o("", "ServiceAccount", "helm-executor.whizard", json!({})),
            o("", "ServiceAccount", "helm-executor.other", json!({})),
        ],
    ));
    inv.roles.push(obj(
        "rbac.authorization.k8s.io/v1",
        "Role",
        ns,
        "kubesphere:whizard:helm-executor",
        json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "whizard"}}}),
    ));
    inv
}

fn actions_on(p: &Plan, kind: &str, name: &str) -> Vec<(PhaseId, Operation)> {
    p.actions()
        .filter(|(_, a)| {
            a.target.resource.kind == kind
                && a.target.name == name
                && a.target.namespace.as_deref() == Some("extension-whizard")
        })
        .map(|(id, a)| (id, a.operation.clone()))
        .collect()
}

#[test]
fn executor_leftovers_in_a_kept_extension_namespace_are_deleted_and_look_alikes_kept() {
    let keep_ns = PlanOptions {
        keep_namespaces: vec!["extension-whizard".into()],
        ..PlanOptions::default()
    };
    for options in [keep_data(), keep_ns] {
        let p = plan(&ks(), &inventory_with_executor_leftovers(), &options);
        let deleted = vec![(
            PhaseId::ClusterLeftovers,
            Operation::Delete {
                propagation: Propagation::Background,
            },
        )];
        for (kind, name) in [
            ("Job", "helm-install-whizard-abc123"),
            ("ConfigMap", "helm-install-whizard-abc123"),
            ("ConfigMap", "helm-uninstall-whizard-def456"),
            ("ServiceAccount", "helm-executor.whizard"),
            ("Role", "kubesphere:whizard:helm-executor"),
        ] {
            assert_eq!(
                actions_on(&p, kind, name),
                deleted,
                "{kind} {name} ({options:?})"
            );
        }
        // Not the executor's: at most their platform metadata is stripped.
        for (kind, name) in [
            ("Job", "helm-install-whizard-mine"),
            ("ConfigMap", "customer-settings"),
            ("ServiceAccount", "helm-executor.other"),
        ] {
            assert!(
                actions_on(&p, kind, name).is_empty(),
                "{kind} {name} ({options:?})"
            );
        }
        let values = actions_on(&p, "ConfigMap", "whizard-values");
        assert!(
            matches!(
                values.as_slice(),
                [(PhaseId::KeptObjects, Operation::StripMetadata { .. })]
            ),
            "{values:?}"
        );
    }
}

#[test]
fn executor_leftovers_in_a_deleted_namespace_go_with_it() {
    let p = plan(
        &ks(),
        &inventory_with_executor_leftovers(),
        &PlanOptions::default(),
    );
    assert!(phase_names(&p, PhaseId::Namespaces).contains(&"extension-whizard".to_owned()));
    for (kind, name) in [
        ("Job", "helm-install-whizard-abc123"),
        ("ServiceAccount", "helm-executor.whizard"),
        ("Role", "kubesphere:whizard:helm-executor"),
    ] {
        assert!(actions_on(&p, kind, name).is_empty(), "{kind} {name}");
    }
}

fn propagation_of(plan: &Plan, kind: &str, name: &str) -> Option<Propagation> {
    plan.actions()
        .find(|(_, a)| a.target.resource.kind == kind && a.target.name == name)
        .and_then(|(_, a)| match a.operation {
            Operation::StripFinalizersThenDelete { propagation, .. }
            | Operation::Delete { propagation } => Some(propagation),
            _ => None,
        })
}

/// The fixture inventory with one unavailable API group that is the
/// platform's own (its APIService is backed by a namespace the plan deletes)
/// instead of the foreign `acme.io`: nothing is hidden that could matter.
fn inventory_seeing_everything() -> Inventory {
    let mut inv = kubesphere_inventory();
    inv.issues = vec![DiscoveryIssue::ApiGroupUnavailable {
        group_version: "whizard.example.com/v1alpha1".into(),
        message: "the server is currently unable to handle the request".into(),
    }];
    inv
}

fn all_custom_resources_orphaned(p: &Plan) -> bool {
    p.phase(PhaseId::CustomResources)
        .expect("phase")
        .actions
        .iter()
        .all(|a| {
            matches!(
                a.operation,
                Operation::StripFinalizersThenDelete {
                    propagation: Propagation::Orphan,
                    ..
                }
            )
        })
}

#[test]
fn a_foreign_group_that_failed_discovery_orphans_every_custom_resource() {
    // The fixture's acme.io APIService is foreign and unavailable: objects
    // of that group were not seen and may name any platform resource as owner.
    let p = full_plan();
    assert!(all_custom_resources_orphaned(&p));
    // The whizard group is served by a namespace the plan deletes: it goes
    // with the plan and hides nothing the garbage collector could act on.
    let p = plan(
        &ks(),
        &inventory_seeing_everything(),
        &PlanOptions::default(),
    );
    assert!(
        p.phase(PhaseId::ApiServices)
            .expect("phase")
            .actions
            .iter()
            .any(|a| a.target.name == "v1alpha1.whizard.example.com")
    );
    assert!(!all_custom_resources_orphaned(&p));
}

#[test]
fn a_platform_crd_whose_instances_were_not_listed_is_kept_and_said_so() {
    let mut inv = kubesphere_inventory();
    let crd = inv
        .crds
        .iter_mut()
        .find(|c| c.name() == "workspaces.tenant.kubesphere.io")
        .expect("workspaces CRD");
    crd.instances_listed = false;
    crd.instances.clear();
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(
        phase_of(
            &p,
            "CustomResourceDefinition",
            "workspaces.tenant.kubesphere.io"
        )
        .is_empty(),
        "a CRD whose instances nobody saw must not be deleted"
    );
    assert!(p.findings.iter().any(|f| matches!(f,
        Finding::Skipped { subject, reason }
            if subject.contains("workspaces.tenant.kubesphere.io") && reason.contains("could not be listed"))));
    // Other platform CRDs still go.
    assert!(
        phase_of(&p, "CustomResourceDefinition", "users.iam.kubesphere.io")
            .contains(&PhaseId::Crds)
    );
}

#[test]
fn custom_resources_something_depends_on_are_orphaned_the_rest_deleted_at_once() {
    let p = plan(
        &ks(),
        &inventory_seeing_everything(),
        &PlanOptions::default(),
    );
    // A user namespace names Workspace ws1 as owner; a binding names User admin.
    assert_eq!(
        propagation_of(&p, "Workspace", "ws1"),
        Some(Propagation::Orphan)
    );
    assert_eq!(
        propagation_of(&p, "User", "admin"),
        Some(Propagation::Orphan)
    );
    let background = p
        .phase(PhaseId::CustomResources)
        .expect("phase")
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a.operation,
                Operation::StripFinalizersThenDelete {
                    propagation: Propagation::Background,
                    ..
                }
            )
        })
        .count();
    assert!(
        background > 0,
        "objects nothing depends on need no orphaning"
    );

    // A cluster-scoped object of another type (seen only for its owner
    // references) makes its owner orphaned too.
    let mut inv = inventory_seeing_everything();
    let Some(Propagation::Background) = propagation_of(&p, "InstallPlan", "whizard") else {
        panic!("InstallPlan whizard has no dependent in the fixture");
    };
    let installplan_uid = p
        .actions()
        .find(|(_, a)| a.target.resource.kind == "InstallPlan" && a.target.name == "whizard")
        .map(|(_, a)| a.target.uid.clone())
        .expect("installplan");
    inv.owned_cluster_objects = vec![ObservedList {
        resource: rt("", "v1", "PersistentVolume", "persistentvolumes", false),
        objects: vec![obj(
            "v1",
            "PersistentVolume",
            None,
            "pv-1",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "kubesphere.io/v1alpha1",
                "kind": "InstallPlan", "name": "whizard", "uid": installplan_uid}]}}),
        )],
    }];
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert_eq!(
        propagation_of(&p, "InstallPlan", "whizard"),
        Some(Propagation::Orphan)
    );

    // A failed list: dependents cannot be ruled out, everything is orphaned.
    let mut inv = inventory_seeing_everything();
    inv.issues.push(DiscoveryIssue::ListFailed {
        resource: "widgets.example.com".into(),
        namespace: None,
        message: "forbidden".into(),
    });
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(
        p.phase(PhaseId::CustomResources)
            .expect("phase")
            .actions
            .iter()
            .all(|a| matches!(
                a.operation,
                Operation::StripFinalizersThenDelete {
                    propagation: Propagation::Orphan,
                    ..
                }
            ))
    );
}

#[test]
fn cluster_registrations_go_in_their_own_phase_after_every_other_custom_resource() {
    let mut inv = kubesphere_inventory();
    let clusters = rt(
        "cluster.kubesphere.io",
        "v1alpha1",
        "Cluster",
        "clusters",
        false,
    );
    let cluster = |name: &str| {
        obj(
            "cluster.kubesphere.io/v1alpha1",
            "Cluster",
            None,
            name,
            json!({"metadata": {"finalizers": ["finalizer.cluster.kubesphere.io"]},
                   "spec": {"connection": {"type": "direct", "kubeconfig": "c2VjcmV0"}}}),
        )
    };
    inv.crds.push(crd(
        clusters,
        vec![cluster("host"), cluster("member-1")],
        json!({}),
    ));
    let p = plan(&ks(), &inv, &PlanOptions::default());
    let registrations = p
        .phase(PhaseId::ClusterRegistrations)
        .expect("phase")
        .actions
        .iter()
        .map(|a| a.target.name.clone())
        .collect::<Vec<_>>();
    assert_eq!(registrations, ["host", "member-1"]);
    for a in &p
        .phase(PhaseId::ClusterRegistrations)
        .expect("phase")
        .actions
    {
        assert_eq!(
            a.operation,
            Operation::StripFinalizersThenDelete {
                finalizers: vec!["finalizer.cluster.kubesphere.io".into()],
                propagation: a_propagation(&a.operation),
            }
        );
    }
    let crs = p.phase(PhaseId::CustomResources).expect("phase");
    assert!(!crs.actions.is_empty());
    assert!(
        crs.actions
            .iter()
            .all(|a| a.target.resource.kind != "Cluster")
    );
    let order: Vec<PhaseId> = p.phases.iter().map(|ph| ph.id).collect();
    let at = |id| order.iter().position(|x| *x == id).expect("phase present");
    assert!(at(PhaseId::CustomResources) < at(PhaseId::ClusterRegistrations));
    assert!(at(PhaseId::ClusterRegistrations) < at(PhaseId::Crds));
    assert!(PhaseId::ClusterRegistrations.waits_for_deletion());
    // Nothing of an object's body reaches the plan: the kubeconfig stays out.
    let text = serde_json::to_string(&p).expect("json");
    assert!(!text.contains("c2VjcmV0"));
}

fn a_propagation(op: &Operation) -> crate::plan::Propagation {
    match op {
        Operation::StripFinalizersThenDelete { propagation, .. } => *propagation,
        other => panic!("unexpected {other:?}"),
    }
}
