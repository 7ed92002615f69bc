//! Planner tests of custom resources left to their CRD's deletion
//! ([`Operation::RemovedWithCrd`]): which instances qualify, and every
//! condition that keeps an instance on a delete of its own.

use super::test_support::{kubesphere_inventory, obj};
use super::*;
use crate::inventory::{DiscoveryIssue, Inventory};
use crate::profile::Profile;
use serde_json::json;

fn ks() -> Profile {
    Profile::builtin("kubesphere").expect("builtin profile")
}

/// The KubeSphere-like inventory without the running controller the
/// default one has (a controller left running keeps every delete its own)
/// and without its unavailable foreign API group (which hides dependents,
/// so every custom resource is orphaned).
fn stopped_inventory() -> Inventory {
    let mut inv = kubesphere_inventory();
    inv.controllers.clear();
    inv.issues.clear();
    inv
}

/// The operation planned for the custom resource named `name`.
fn operation_on<'a>(plan: &'a Plan, name: &str) -> Option<(PhaseId, &'a Operation)> {
    plan.actions()
        .find(|(_, a)| a.target.name == name && !a.target.resource.group.is_empty())
        .map(|(p, a)| (p, &a.operation))
}

#[test]
fn unowned_instances_of_a_deleted_platform_crd_without_foreign_finalizers_go_with_it() {
    let p = plan(&ks(), &stopped_inventory(), &PlanOptions::default());
    let crd = "installplans.kubesphere.io".to_owned();
    assert_eq!(
        operation_on(&p, "whizard"),
        Some((
            PhaseId::CustomResources,
            &Operation::RemovedWithCrd {
                finalizers: vec!["kubesphere.io/installplan-protection".into()],
                crd: crd.clone(),
            }
        ))
    );
    // No finalizer at all: planned all the same (the executor sends nothing).
    assert_eq!(
        operation_on(&p, "my-ext"),
        Some((
            PhaseId::CustomResources,
            &Operation::RemovedWithCrd {
                finalizers: vec![],
                crd: crd.clone(),
            }
        ))
    );
    // The CRD is deleted in the same plan.
    assert!(
        p.phase(PhaseId::Crds)
            .expect("crds phase")
            .actions
            .iter()
            .any(|a| a.target.name == crd && a.operation.sends_delete())
    );
    assert_eq!(p.counts.removed_with_crds, 2);
    assert!(p.counts.deletes >= 2);
    let text = crate::render::render_plan(&p, crate::render::Detail::Details);
    assert!(text.contains(
        "      strip finalizers, removed with its CRD installplans.kubesphere.io/whizard  [finalizers: kubesphere.io/installplan-protection; deleted by the API server with CRD installplans.kubesphere.io]\n"
    ), "{text}");
    assert!(
        text.contains("of the deletes, 2 custom resources are removed by their CRD's deletion"),
        "{text}"
    );
}

#[test]
fn an_owner_or_a_foreign_finalizer_keeps_the_delete_of_its_own() {
    let p = plan(&ks(), &stopped_inventory(), &PlanOptions::default());
    // ws1 owns the user namespace project-a: Orphan, by name.
    assert!(matches!(
        operation_on(&p, "ws1"),
        Some((
            PhaseId::CustomResources,
            Operation::StripFinalizersThenDelete {
                propagation: Propagation::Orphan,
                ..
            }
        ))
    ));
    // admin carries acme.example.com/audit (and owns a binding).
    assert!(matches!(
        operation_on(&p, "admin"),
        Some((
            PhaseId::CustomResources,
            Operation::StripFinalizersThenDelete { .. }
        ))
    ));
}

#[test]
fn a_foreign_finalizer_alone_keeps_the_delete_of_its_own() {
    let mut inv = stopped_inventory();
    let plans = inv
        .crds
        .iter_mut()
        .find(|c| c.name() == "installplans.kubesphere.io")
        .expect("installplans");
    plans.instances.push(obj(
        "kubesphere.io/v1alpha1",
        "InstallPlan",
        None,
        "held",
        json!({"metadata": {"finalizers": ["kubesphere.io/installplan-protection", "acme.example.com/keep"]}}),
    ));
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert_eq!(
        operation_on(&p, "held"),
        Some((
            PhaseId::CustomResources,
            &Operation::StripFinalizersThenDelete {
                finalizers: vec!["kubesphere.io/installplan-protection".into()],
                propagation: Propagation::Background,
            }
        ))
    );
    assert!(matches!(
        operation_on(&p, "my-ext"),
        Some((_, Operation::RemovedWithCrd { .. }))
    ));
}

#[test]
fn shared_crd_instances_keep_their_deletes_even_when_the_crd_goes() {
    let mut inv = stopped_inventory();
    // Without the foreign instance the shared CRD is removed on request.
    let apps = inv
        .crds
        .iter_mut()
        .find(|c| c.name() == "applications.app.k8s.io")
        .expect("applications");
    apps.instances
        .retain(|i| i.metadata.name.as_deref() != Some("their-app"));
    let options = PlanOptions {
        include_shared_crds: true,
        ..PlanOptions::default()
    };
    let p = plan(&ks(), &inv, &options);
    assert!(
        p.phase(PhaseId::Crds)
            .expect("crds")
            .actions
            .iter()
            .any(|a| a.target.name == "applications.app.k8s.io")
    );
    assert!(matches!(
        operation_on(&p, "console"),
        Some((
            PhaseId::CustomResources,
            Operation::StripFinalizersThenDelete { .. }
        ))
    ));
}

#[test]
fn a_failed_list_an_unlisted_crd_or_a_running_controller_keep_every_delete_its_own() {
    let none_left = |p: &Plan| {
        p.actions()
            .all(|(_, a)| !matches!(a.operation, Operation::RemovedWithCrd { .. }))
            && p.counts.removed_with_crds == 0
    };
    // Fail closed: a list failed, so dependents cannot be ruled out.
    let mut inv = stopped_inventory();
    inv.issues.push(DiscoveryIssue::ListFailed {
        resource: "secrets".into(),
        namespace: Some("acme".into()),
        message: "boom".into(),
    });
    assert!(none_left(&plan(&ks(), &inv, &PlanOptions::default())));

    // The CRD's instances were not all listed: the CRD stays.
    let mut inv = stopped_inventory();
    for crd in &mut inv.crds {
        if crd.name() == "installplans.kubesphere.io" {
            crd.instances_listed = false;
        }
    }
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(
        !matches!(
            operation_on(&p, "my-ext"),
            Some((_, Operation::RemovedWithCrd { .. }))
        ),
        "{:?}",
        operation_on(&p, "my-ext")
    );

    // A platform controller the plan does not stop may put a finalizer
    // back between the strip and the CRD's deletion.
    let mut inv = kubesphere_inventory();
    inv.issues.clear();
    let p = plan(&ks(), &inv, &PlanOptions::default());
    assert!(none_left(&p));
    assert!(matches!(
        operation_on(&p, "my-ext"),
        Some((
            PhaseId::CustomResources,
            Operation::StripFinalizersThenDelete {
                propagation: Propagation::Background,
                ..
            }
        ))
    ));
}

#[test]
fn a_plan_with_removed_with_crd_reads_back_and_a_version_1_file_is_refused() {
    let p = plan(&ks(), &stopped_inventory(), &PlanOptions::default());
    let text = to_plan_file(&p).expect("serialise");
    assert!(text.contains("\"type\": \"removedWithCrd\""), "{text}");
    assert_eq!(parse_plan_file(&text).expect("parse"), p);

    let mut old: serde_json::Value = serde_json::from_str(&text).expect("json");
    old["schema_version"] = 1.into();
    let err = parse_plan_file(&old.to_string()).expect_err("version 1");
    assert!(matches!(err, PlanFileError::Schema { found: 1 }), "{err}");
    assert_eq!(
        err.to_string(),
        "has schema version 1, this kubesweep reads version 2: make a new plan with this kubesweep"
    );
}
