//! Custom resources left to their CRD's deletion ([`Operation::RemovedWithCrd`]):
//! which instances qualify, and the last check over the finished phases
//! that turns them back into deletes of their own wherever the condition no
//! longer holds.
//!
//! Why it is safe: deleting a CRD makes the API server delete every
//! instance of it (the `customresourcecleanup.apiextensions.k8s.io`
//! finalizer), and the CRD is gone only once they all are. The plan deletes
//! the CRD with its UID as precondition, so every destructive request
//! kubesweep sends still names the UID it was planned for; the instance
//! deletes are the API server's, following from that one. An instance
//! qualifies only when that deletion does exactly what its own delete would
//! have done:
//! - its CRD is the platform's alone and all its instances were listed (so
//!   every instance the server deletes is planned, backed up and freed of
//!   platform finalizers), and the same plan deletes the CRD;
//! - nothing is seen to depend on it (it would be deleted with Background
//!   propagation, which is also what the server's delete does; the
//!   planner's fail-closed rule applies: a failed list means Orphan, and
//!   Orphan means a delete of its own);
//! - it carries no finalizer outside the profile (that one would hold the
//!   CRD Terminating, so it gets its own delete and its wait, as before);
//! - it is not a cluster registration (their phase runs after the others);
//! - no platform controller is left running by the plan: the strip and the
//!   removal are then phases apart, and a controller could put its
//!   finalizer back in between (a delete of its own stops that, because
//!   nothing can add a finalizer to an object being deleted).

use std::collections::HashSet;

use super::super::model::{Finding, Operation, Phase, PhaseId, Propagation};

/// The operation for a custom resource with platform `finalizers` and
/// `propagation` (as the planner decided it), given `crd`, the name of its
/// CRD when the plan deletes that CRD and all its instances were listed,
/// and whether it carries a foreign finalizer.
pub(super) fn instance_operation(
    finalizers: Vec<String>,
    propagation: Propagation,
    crd: Option<&str>,
    foreign_finalizers: bool,
) -> Operation {
    match crd {
        Some(crd) if propagation == Propagation::Background && !foreign_finalizers => {
            Operation::RemovedWithCrd {
                finalizers,
                crd: crd.to_owned(),
            }
        }
        _ => Operation::StripFinalizersThenDelete {
            finalizers,
            propagation,
        },
    }
}

/// Over the finished phases: every [`Operation::RemovedWithCrd`] whose CRD
/// the [`PhaseId::Crds`] phase does not delete (a later rule kept it), or
/// any when a platform controller runs that the plan does not stop, becomes
/// the Background delete of its own it would otherwise have been.
pub(super) fn settle(phases: &mut [Phase], findings: &[Finding]) {
    let controller_left_running = findings.iter().any(|f| {
        matches!(
            f,
            Finding::ControllerRunning {
                stopped_by_plan: false,
                ..
            }
        )
    });
    let deleted_crds: HashSet<String> = phases
        .iter()
        .filter(|p| p.id == PhaseId::Crds)
        .flat_map(|p| &p.actions)
        .filter(|a| a.operation.sends_delete())
        .map(|a| a.target.name.clone())
        .collect();
    for action in phases.iter_mut().flat_map(|p| p.actions.iter_mut()) {
        let Operation::RemovedWithCrd { finalizers, crd } = &mut action.operation else {
            continue;
        };
        if controller_left_running || !deleted_crds.contains(crd.as_str()) {
            action.operation = Operation::StripFinalizersThenDelete {
                finalizers: std::mem::take(finalizers),
                propagation: Propagation::Background,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types;
    use crate::plan::Action;
    use crate::resource::{ObjectRef, ResourceType};

    fn fin() -> Vec<String> {
        vec!["kubesphere.io/x".to_owned()]
    }

    #[test]
    fn only_background_instances_without_foreign_finalizers_of_a_deleted_crd_qualify() {
        let crd = Some("workspaces.tenant.kubesphere.io");
        assert_eq!(
            instance_operation(fin(), Propagation::Background, crd, false),
            Operation::RemovedWithCrd {
                finalizers: fin(),
                crd: "workspaces.tenant.kubesphere.io".into()
            }
        );
        for (propagation, crd, foreign) in [
            (Propagation::Orphan, crd, false),
            (Propagation::Background, crd, true),
            (Propagation::Background, None, false),
            (Propagation::Foreground, crd, false),
        ] {
            assert_eq!(
                instance_operation(fin(), propagation, crd, foreign),
                Operation::StripFinalizersThenDelete {
                    finalizers: fin(),
                    propagation
                },
                "{propagation:?} {crd:?} {foreign}"
            );
        }
    }

    fn action(resource: ResourceType, name: &str, operation: Operation) -> Action {
        Action {
            target: ObjectRef {
                resource,
                namespace: None,
                name: name.into(),
                uid: format!("uid-{name}"),
                resource_version: "1".into(),
            },
            operation,
            reason: "test".into(),
            destroys_data: false,
        }
    }

    fn phases(crd_deleted: bool) -> Vec<Phase> {
        let instance = ResourceType {
            group: "tenant.kubesphere.io".into(),
            version: "v1beta1".into(),
            kind: "Workspace".into(),
            plural: "workspaces".into(),
            namespaced: false,
        };
        let crds = if crd_deleted {
            vec![action(
                types::crd(),
                "workspaces.tenant.kubesphere.io",
                Operation::Delete {
                    propagation: Propagation::Background,
                },
            )]
        } else {
            Vec::new()
        };
        vec![
            Phase {
                id: PhaseId::CustomResources,
                actions: vec![action(
                    instance,
                    "ws",
                    Operation::RemovedWithCrd {
                        finalizers: fin(),
                        crd: "workspaces.tenant.kubesphere.io".into(),
                    },
                )],
            },
            Phase {
                id: PhaseId::Crds,
                actions: crds,
            },
        ]
    }

    fn first_operation(phases: &[Phase]) -> &Operation {
        &phases[0].actions[0].operation
    }

    #[test]
    fn settle_keeps_it_only_while_the_crd_is_deleted_and_no_controller_is_left_running() {
        let mut kept = phases(true);
        settle(&mut kept, &[]);
        assert!(matches!(
            first_operation(&kept),
            Operation::RemovedWithCrd { .. }
        ));

        let own_delete = Operation::StripFinalizersThenDelete {
            finalizers: fin(),
            propagation: Propagation::Background,
        };
        let mut crd_kept = phases(false);
        settle(&mut crd_kept, &[]);
        assert_eq!(first_operation(&crd_kept), &own_delete);

        let running = |stopped_by_plan| Finding::ControllerRunning {
            namespace: "kubesphere-system".into(),
            name: "ks-controller-manager".into(),
            replicas: 1,
            ready_replicas: 1,
            stopped_by_plan,
        };
        let mut stopped = phases(true);
        settle(&mut stopped, &[running(true)]);
        assert!(matches!(
            first_operation(&stopped),
            Operation::RemovedWithCrd { .. }
        ));
        let mut left_running = phases(true);
        settle(&mut left_running, &[running(false)]);
        assert_eq!(first_operation(&left_running), &own_delete);
    }
}
