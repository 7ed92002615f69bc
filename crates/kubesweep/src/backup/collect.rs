//! What goes into a backup: every object a plan deletes or changes, taken
//! from the inventory read right before execution (so Terminating objects and
//! CRDs are included exactly as they are), and for objects the plan only
//! cleans, the labels, annotations, finalizers and owner references it removes.
//! Pure: the plan and the inventory in, [`BackupObject`]s out.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use kube::api::DynamicObject;
use serde_json::Value;

use super::format::{RemovedMetadata, RestoreMode, Source};
use crate::inventory::Inventory;
use crate::plan::{Operation, Plan};
use crate::resource::{ObjectRef, ResourceType};

/// One object to store, with what the plan does to it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupObject {
    /// The type it was read as.
    pub resource: ResourceType,
    /// The whole object, `apiVersion` and `kind` included.
    pub object: Value,
    /// Verbs of the plan's operations on it, in plan order.
    pub operations: Vec<String>,
    /// Why it is in the backup.
    pub source: Source,
    /// How restore treats it.
    pub mode: RestoreMode,
    /// What the plan removes from it, for [`RestoreMode::PutBack`].
    pub removed: Option<RemovedMetadata>,
}

impl BackupObject {
    /// An object read as `resource`, with `apiVersion` and `kind` filled in
    /// (items of a LIST carry neither).
    pub fn from_dynamic(
        resource: &ResourceType,
        object: &DynamicObject,
        operations: Vec<String>,
        source: Source,
        mode: RestoreMode,
    ) -> Self {
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), resource.api_version().into());
            map.insert("kind".into(), resource.kind.clone().into());
        }
        Self {
            resource: resource.clone(),
            object: value,
            operations,
            source,
            mode,
            removed: None,
        }
    }

    /// Whether only `apiVersion`, `kind` and `metadata` are known (kept
    /// objects are discovered metadata only).
    pub fn metadata_only(&self) -> bool {
        self.object.as_object().is_some_and(|m| {
            m.keys()
                .all(|k| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        })
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        self.object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A plan target the inventory does not hold: the backup would be incomplete.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The inventory has no object with the target's UID.
    #[error(
        "{target} (uid {uid}) is planned but was not read before execution; re-run the plan",
        uid = target.uid
    )]
    NotInInventory {
        /// The target.
        target: Box<ObjectRef>,
    },
}

/// Every object of the inventory by UID; an object also held whole (a Role
/// in a kept namespace) keeps its whole version over the metadata-only scan.
fn by_uid(inventory: &Inventory) -> HashMap<&str, &DynamicObject> {
    let mut map = HashMap::new();
    for (_, object) in inventory.objects() {
        if let Some(uid) = object.metadata.uid.as_deref() {
            map.entry(uid).or_insert(object);
        }
    }
    map
}

/// The objects `plan` deletes or changes, as `inventory` holds them, one per
/// object (several actions on one object merge), in plan order.
pub fn plan_objects(plan: &Plan, inventory: &Inventory) -> Result<Vec<BackupObject>, CollectError> {
    let objects = by_uid(inventory);
    collect(plan, |uid| objects.get(uid).map(|o| Cow::Borrowed(*o)))
}

/// [`plan_objects`], consuming the inventory: each target is converted and
/// then dropped, and what the plan does not touch is dropped at once, so
/// the inventory and the backup's copy of it are never both held whole.
pub fn plan_objects_owned(
    plan: &Plan,
    inventory: Inventory,
) -> Result<Vec<BackupObject>, CollectError> {
    let targets: HashSet<&str> = plan.actions().map(|(_, a)| a.target.uid.as_str()).collect();
    let mut objects: HashMap<String, DynamicObject> = HashMap::new();
    for (_, object) in inventory.into_objects() {
        let Some(uid) = object.metadata.uid.as_deref() else {
            continue;
        };
        if targets.contains(uid) && !objects.contains_key(uid) {
            objects.insert(uid.to_owned(), object);
        }
    }
    collect(plan, |uid| objects.remove(uid).map(Cow::Owned))
}

/// The common part of [`plan_objects`] and [`plan_objects_owned`]: `take`
/// gives each target's object the first time the plan names it; a later
/// action on the same object reads the metadata from the entry made then.
fn collect<'a>(
    plan: &Plan,
    mut take: impl FnMut(&str) -> Option<Cow<'a, DynamicObject>>,
) -> Result<Vec<BackupObject>, CollectError> {
    let mut out: Vec<BackupObject> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for (_, action) in plan.actions() {
        let target = &action.target;
        let known = position.get(&target.uid).copied();
        let object = match known {
            Some(i) => serde_json::from_value::<DynamicObject>(out[i].object.clone())
                .ok()
                .map(Cow::Owned),
            None => take(&target.uid),
        };
        let Some(object) = object else {
            return Err(CollectError::NotInInventory {
                target: Box::new(target.clone()),
            });
        };
        let removed = match &action.operation {
            Operation::StripMetadata {
                labels,
                annotations,
                finalizers,
                owner_reference_uids,
            } => Some(removed_metadata(
                &object,
                labels,
                annotations,
                finalizers,
                owner_reference_uids,
            )),
            _ => None,
        };
        let verb = action.operation.verb().to_owned();
        let deletes = !matches!(action.operation, Operation::StripMetadata { .. });
        match known {
            Some(i) => {
                let entry = &mut out[i];
                entry.operations.push(verb);
                if deletes {
                    entry.mode = RestoreMode::Recreate;
                }
                if let Some(r) = removed {
                    merge(entry.removed.get_or_insert_with(Default::default), r);
                }
            }
            None => {
                let mode = if deletes {
                    RestoreMode::Recreate
                } else {
                    RestoreMode::PutBack
                };
                let mut entry = BackupObject::from_dynamic(
                    &target.resource,
                    &object,
                    vec![verb],
                    Source::PlanTarget,
                    mode,
                );
                entry.removed = removed;
                position.insert(target.uid.clone(), out.len());
                out.push(entry);
            }
        }
    }
    Ok(out)
}

/// Names of the namespaces `plan` deletes (their content goes with them).
pub fn deleted_namespaces(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = plan
        .actions()
        .filter(|(_, a)| {
            a.operation.deletes()
                && a.target.resource.group.is_empty()
                && a.target.resource.plural == "namespaces"
        })
        .map(|(_, a)| a.target.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn removed_metadata(
    object: &DynamicObject,
    labels: &[String],
    annotations: &[String],
    finalizers: &[String],
    owner_reference_uids: &[String],
) -> RemovedMetadata {
    let meta = &object.metadata;
    let pick = |map: &Option<BTreeMap<String, String>>, keys: &[String]| {
        keys.iter()
            .filter_map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k))
                    .map(|v| (k.clone(), v.clone()))
            })
            .collect::<BTreeMap<_, _>>()
    };
    RemovedMetadata {
        labels: pick(&meta.labels, labels),
        annotations: pick(&meta.annotations, annotations),
        finalizers: meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| finalizers.contains(f))
            .cloned()
            .collect(),
        owner_references: meta
            .owner_references
            .iter()
            .flatten()
            .filter(|o| owner_reference_uids.contains(&o.uid))
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect(),
    }
}

fn merge(into: &mut RemovedMetadata, more: RemovedMetadata) {
    into.labels.extend(more.labels);
    into.annotations.extend(more.annotations);
    for f in more.finalizers {
        if !into.finalizers.contains(&f) {
            into.finalizers.push(f);
        }
    }
    for o in more.owner_references {
        if !into.owner_references.contains(&o) {
            into.owner_references.push(o);
        }
    }
}

/// Whether namespace content of this type and object is left out of a
/// backup, because a controller re-creates it on its own: Events and
/// endpoint bookkeeping, leases, objects a controller owns (pods of a
/// ReplicaSet, ReplicaSets of a Deployment), the per-namespace root CA
/// ConfigMap and the `default` ServiceAccount.
pub fn skip_namespace_content(resource: &ResourceType, object: &DynamicObject) -> bool {
    const TYPES: &[(&str, &str)] = &[
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("coordination.k8s.io", "leases"),
        ("", "bindings"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
    ];
    if TYPES
        .iter()
        .any(|(g, p)| resource.group == *g && resource.plural == *p)
    {
        return true;
    }
    let controlled = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true));
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let automatic = resource.group.is_empty()
        && ((resource.plural == "configmaps" && name == "kube-root-ca.crt")
            || (resource.plural == "serviceaccounts" && name == "default"));
    controlled || automatic
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterIdentity, types};
    use crate::plan::{Action, Phase, PhaseId, PlanCounts, PlanOptions, Propagation};
    use serde_json::json;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    fn action(resource: ResourceType, o: &DynamicObject, operation: Operation) -> Action {
        Action {
            target: ObjectRef::from_object(&resource, o).expect("ref"),
            operation,
            reason: "test".into(),
            destroys_data: false,
        }
    }

    fn plan_of(actions: Vec<(PhaseId, Action)>) -> Plan {
        let phases = PhaseId::ALL
            .iter()
            .map(|id| Phase {
                id: *id,
                actions: actions
                    .iter()
                    .filter(|(p, _)| p == id)
                    .map(|(_, a)| a.clone())
                    .collect(),
            })
            .collect::<Vec<_>>();
        Plan {
            schema_version: 1,
            cluster: ClusterIdentity::default(),
            profile: "kubesphere".into(),
            kubesweep_version: "0".into(),
            options: PlanOptions::default(),
            counts: PlanCounts::compute(&phases, &[]),
            phases,
            findings: vec![],
            data_hazards: vec![],
        }
    }

    #[test]
    fn deleted_objects_are_stored_whole_and_kept_ones_with_what_is_removed() {
        let ns = object(json!({"metadata": {
        "name": "project", "uid": "ns-uid", "resourceVersion": "5",
        "labels": {"kubesphere.io/workspace": "w", "team": "a"},
        "annotations": {"kubesphere.io/creator": "admin", "note": "x"},
        "finalizers": ["kubesphere.io/cascading-deletion", "acme.io/keep"],
        "ownerReferences": [
            {"apiVersion": "tenant.kubesphere.io/v1beta1", "kind": "Workspace", "name": "w", "uid": "ws-uid"},
            {"apiVersion": "acme.io/v1", "kind": "Thing", "name": "t", "uid": "t-uid"}
        ]}}));
        let role = object(json!({"metadata": {
            "name": "kubesphere:x", "uid": "cr-uid", "resourceVersion": "9",
            "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["f"]},
            "rules": []}));
        let mut inventory = Inventory::default();
        inventory.namespaces.push(ns.clone());
        inventory.cluster_roles.push(role.clone());
        let plan = plan_of(vec![
            (
                PhaseId::KeptObjects,
                action(
                    types::namespace(),
                    &ns,
                    Operation::StripMetadata {
                        labels: vec!["kubesphere.io/workspace".into(), "absent".into()],
                        annotations: vec!["kubesphere.io/creator".into()],
                        finalizers: vec!["kubesphere.io/cascading-deletion".into()],
                        owner_reference_uids: vec!["ws-uid".into()],
                    },
                ),
            ),
            (
                PhaseId::ClusterLeftovers,
                action(
                    types::cluster_role(),
                    &role,
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ),
        ]);
        let objects = plan_objects(&plan, &inventory).expect("collect");
        assert_eq!(
            plan_objects_owned(&plan, inventory.clone()).expect("collect owned"),
            objects
        );
        assert_eq!(objects.len(), 2);
        let kept = &objects[0];
        assert_eq!(kept.mode, RestoreMode::PutBack);
        assert_eq!(kept.object["kind"], "Namespace");
        assert_eq!(kept.object["apiVersion"], "v1");
        let removed = kept.removed.as_ref().expect("removed");
        assert_eq!(
            removed.labels,
            BTreeMap::from([("kubesphere.io/workspace".into(), "w".into())])
        );
        assert_eq!(
            removed.annotations,
            BTreeMap::from([("kubesphere.io/creator".into(), "admin".into())])
        );
        assert_eq!(removed.finalizers, vec!["kubesphere.io/cascading-deletion"]);
        assert_eq!(removed.owner_references.len(), 1);
        assert_eq!(removed.owner_references[0]["uid"], "ws-uid");
        let deleted = &objects[1];
        assert_eq!(deleted.mode, RestoreMode::Recreate);
        assert_eq!(deleted.object["kind"], "ClusterRole");
        assert_eq!(
            deleted.object["metadata"]["deletionTimestamp"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(deleted.operations, vec!["delete"]);
    }

    #[test]
    fn several_actions_on_one_object_make_one_entry_and_a_missing_target_is_an_error() {
        let ns = object(
            json!({"metadata": {"name": "kubesphere-system", "uid": "u", "resourceVersion": "1"}}),
        );
        let mut inventory = Inventory::default();
        inventory.namespaces.push(ns.clone());
        let plan = plan_of(vec![
            (
                PhaseId::Namespaces,
                action(
                    types::namespace(),
                    &ns,
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ),
            (
                PhaseId::NamespaceFinalize,
                action(types::namespace(), &ns, Operation::FinalizeNamespaceIfStuck),
            ),
        ]);
        let objects = plan_objects(&plan, &inventory).expect("collect");
        assert_eq!(
            plan_objects_owned(&plan, inventory.clone()).expect("collect owned"),
            objects
        );
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].operations, vec!["delete", "finalize if stuck"]);
        assert_eq!(deleted_namespaces(&plan), vec!["kubesphere-system"]);

        let err = plan_objects(&plan, &Inventory::default()).expect_err("missing");
        assert!(err.to_string().contains("kubesphere-system"), "{err}");
        let err = plan_objects_owned(&plan, Inventory::default()).expect_err("missing");
        assert!(err.to_string().contains("kubesphere-system"), "{err}");
    }

    #[test]
    fn a_strip_after_a_delete_of_the_same_object_still_records_what_it_removes() {
        let ns = object(json!({"metadata": {
            "name": "p", "uid": "ns-uid", "resourceVersion": "3",
            "labels": {"kubesphere.io/workspace": "w"}}}));
        let mut inventory = Inventory::default();
        inventory.namespaces.push(ns.clone());
        let plan = plan_of(vec![
            (
                PhaseId::KeptObjects,
                action(
                    types::namespace(),
                    &ns,
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ),
            (
                PhaseId::Namespaces,
                action(
                    types::namespace(),
                    &ns,
                    Operation::StripMetadata {
                        labels: vec!["kubesphere.io/workspace".into()],
                        annotations: vec![],
                        finalizers: vec![],
                        owner_reference_uids: vec![],
                    },
                ),
            ),
        ]);
        let objects = plan_objects_owned(&plan, inventory.clone()).expect("collect");
        assert_eq!(objects, plan_objects(&plan, &inventory).expect("collect"));
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].mode, RestoreMode::Recreate);
        assert_eq!(
            objects[0].removed.as_ref().expect("removed").labels,
            BTreeMap::from([("kubesphere.io/workspace".into(), "w".into())])
        );
    }

    #[test]
    fn controller_made_namespace_content_is_skipped() {
        let cm = |name: &str| object(json!({"metadata": {"name": name, "namespace": "n"}}));
        let configmaps = ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
        };
        assert!(skip_namespace_content(&configmaps, &cm("kube-root-ca.crt")));
        assert!(!skip_namespace_content(&configmaps, &cm("settings")));
        let pod = object(
            json!({"metadata": {"name": "p", "namespace": "n", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "x", "controller": true}]}}),
        );
        let pods = ResourceType {
            kind: "Pod".into(),
            plural: "pods".into(),
            ..configmaps.clone()
        };
        assert!(skip_namespace_content(&pods, &pod));
    }
}
