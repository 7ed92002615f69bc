//! Whether a saved plan still fits the cluster it is about to be applied to.
//!
//! A plan is bound to one cluster (the UID of `kube-system`) and to the exact
//! objects it names (their UIDs). Before anything is changed, `apply` compares
//! the saved plan with a fresh inventory: another cluster, or an object that
//! was deleted and re-created under the same name since planning, makes the
//! whole plan stale. Objects that are simply gone are fine: the plan's work on
//! them is done. Pure: no I/O.

use std::collections::HashMap;

use crate::inventory::{ClusterIdentity, Inventory};
use crate::plan::Plan;
use crate::resource::{ObjectRef, ResourceType};

/// A planned target whose name now belongs to another object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecreatedTarget {
    /// The object as planned.
    pub planned: ObjectRef,
    /// UID of the object that has its name now.
    pub current_uid: String,
}

/// Why a saved plan may not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanMismatch {
    /// The plan was made for another cluster.
    #[error(
        "the plan was made for another cluster (kube-system uid {planned}, server {planned_server}); \
         this cluster's kube-system uid is {actual}"
    )]
    OtherCluster {
        /// kube-system UID recorded in the plan.
        planned: String,
        /// Server recorded in the plan.
        planned_server: String,
        /// kube-system UID of the connected cluster.
        actual: String,
    },
    /// Objects named in the plan were re-created since it was made.
    #[error("the plan is stale: {} planned object(s) were re-created since planning (first: {}); plan again", .0.len(), .0.first().map(|t| t.planned.to_string()).unwrap_or_default())]
    Recreated(Vec<RecreatedTarget>),
}

/// Where an object lives, independent of the API version it was read with.
type Key = (String, String, Option<String>, String);

fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> Key {
    (
        resource.group.clone(),
        resource.plural.clone(),
        namespace.map(str::to_owned),
        name.to_owned(),
    )
}

/// UID of every object in the inventory, by group, plural, namespace and name.
fn uid_index(inventory: &Inventory) -> HashMap<Key, String> {
    let mut index = HashMap::new();
    for (resource, object) in inventory.objects() {
        if let (Some(name), Some(uid)) = (&object.metadata.name, &object.metadata.uid) {
            index
                .entry(key(&resource, object.metadata.namespace.as_deref(), name))
                .or_insert_with(|| uid.clone());
        }
    }
    index
}

/// Checks a saved plan against the connected cluster's identity and a fresh
/// inventory of it.
pub fn check_plan(
    plan: &Plan,
    cluster: &ClusterIdentity,
    current: &Inventory,
) -> Result<(), PlanMismatch> {
    if plan.cluster.kube_system_uid != cluster.kube_system_uid {
        return Err(PlanMismatch::OtherCluster {
            planned: plan.cluster.kube_system_uid.clone(),
            planned_server: plan.cluster.server.clone(),
            actual: cluster.kube_system_uid.clone(),
        });
    }
    let index = uid_index(current);
    let recreated: Vec<RecreatedTarget> = plan
        .actions()
        .filter_map(|(_, action)| {
            let target = &action.target;
            let current_uid = index.get(&key(
                &target.resource,
                target.namespace.as_deref(),
                &target.name,
            ))?;
            (*current_uid != target.uid).then(|| RecreatedTarget {
                planned: target.clone(),
                current_uid: current_uid.clone(),
            })
        })
        .collect();
    if recreated.is_empty() {
        Ok(())
    } else {
        Err(PlanMismatch::Recreated(recreated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types;
    use crate::plan::{Action, Operation, Phase, PhaseId, Propagation};
    use kube::api::DynamicObject;

    fn identity(uid: &str) -> ClusterIdentity {
        ClusterIdentity {
            kube_system_uid: uid.into(),
            server: "https://example".into(),
            context: None,
        }
    }

    fn namespace(name: &str, uid: &str) -> DynamicObject {
        let mut object = DynamicObject::new(name, &types::namespace().api_resource());
        object.metadata.uid = Some(uid.into());
        object.metadata.resource_version = Some("1".into());
        object
    }

    fn plan_deleting(name: &str, uid: &str) -> Plan {
        let mut inventory = Inventory::empty(identity("cluster-a"));
        inventory.namespaces.push(namespace(name, uid));
        let target = ObjectRef::from_object(&types::namespace(), &inventory.namespaces[0])
            .expect("complete object");
        let mut plan = crate::plan::plan(
            &crate::profile::Profile::builtin("kubesphere").expect("builtin"),
            &Inventory::empty(identity("cluster-a")),
            &Default::default(),
        );
        plan.phases.push(Phase {
            id: PhaseId::Namespaces,
            actions: vec![Action {
                target,
                operation: Operation::Delete {
                    propagation: Propagation::Background,
                },
                reason: "test".into(),
                destroys_data: false,
            }],
        });
        plan
    }

    #[test]
    fn a_plan_for_another_cluster_is_refused() {
        let plan = plan_deleting("kubesphere-system", "uid-1");
        let err = check_plan(
            &plan,
            &identity("cluster-b"),
            &Inventory::empty(identity("cluster-b")),
        )
        .expect_err("other cluster");
        assert!(matches!(err, PlanMismatch::OtherCluster { .. }));
        assert!(err.to_string().contains("cluster-a") && err.to_string().contains("cluster-b"));
    }

    #[test]
    fn a_recreated_object_makes_the_plan_stale() {
        let plan = plan_deleting("kubesphere-system", "uid-1");
        let mut current = Inventory::empty(identity("cluster-a"));
        current
            .namespaces
            .push(namespace("kubesphere-system", "uid-2"));
        let err = check_plan(&plan, &identity("cluster-a"), &current).expect_err("stale");
        match err {
            PlanMismatch::Recreated(targets) => {
                assert_eq!(targets.len(), 1);
                assert_eq!(targets[0].planned.uid, "uid-1");
                assert_eq!(targets[0].current_uid, "uid-2");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn objects_that_are_gone_or_unchanged_keep_the_plan_valid() {
        let plan = plan_deleting("kubesphere-system", "uid-1");
        let gone = Inventory::empty(identity("cluster-a"));
        assert_eq!(check_plan(&plan, &identity("cluster-a"), &gone), Ok(()));
        let mut same = Inventory::empty(identity("cluster-a"));
        same.namespaces
            .push(namespace("kubesphere-system", "uid-1"));
        assert_eq!(check_plan(&plan, &identity("cluster-a"), &same), Ok(()));
    }

    #[test]
    fn a_recreated_helm_release_record_makes_the_plan_stale() {
        // Release records live only in the Helm part of the inventory: the
        // staleness index must see them like every other list.
        let record = |uid: &str| {
            let mut object = DynamicObject::new(
                "sh.helm.release.v1.demo.v1",
                &crate::helm::record_type(&DynamicObject::new(
                    "x",
                    &types::namespace().api_resource(),
                ))
                .api_resource(),
            )
            .within("extension-demo");
            object.metadata.uid = Some(uid.into());
            object.metadata.resource_version = Some("1".into());
            object
        };
        let planned = record("uid-1");
        let mut plan = plan_deleting("unrelated", "uid-0");
        let phase = plan.phases.last_mut().expect("the test phase");
        phase.id = PhaseId::HelmRecords;
        phase.actions[0].target =
            ObjectRef::from_object(&crate::helm::record_type(&planned), &planned)
                .expect("complete");
        let mut current = Inventory::empty(identity("cluster-a"));
        current.helm.releases.push(crate::helm::ObservedRelease {
            name: "demo".into(),
            namespace: "extension-demo".into(),
            records: vec![record("uid-2")],
            ..Default::default()
        });
        let err = check_plan(&plan, &identity("cluster-a"), &current).expect_err("stale");
        assert!(
            matches!(err, PlanMismatch::Recreated(ref t) if t[0].current_uid == "uid-2"),
            "{err:?}"
        );
    }
}
