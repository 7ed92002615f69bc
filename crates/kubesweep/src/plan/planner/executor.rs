//! The planner's helm-executor part: the per-extension leftovers of the
//! platform's Helm executor (its Jobs, their ConfigMaps, the ServiceAccount
//! helm runs as) inside extension namespaces that are kept.
//!
//! A deleted namespace takes them along; a kept one (`--keep-namespace`,
//! `--keep-data`) would keep them forever, with credentials in the
//! ConfigMaps and a ServiceAccount bound to the executor's RBAC. Proof is
//! per extension of the namespace (see [`crate::profile::HelmExecutorRules`]),
//! never the customer-shared `kubesphere.io/managed` label alone. The
//! executor's RBAC is proven by the profile's RBAC rules in
//! [`Planner::cluster_leftovers`].

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl Planner<'_> {
    /// Namespace → extensions proven to live there: the value of the
    /// executor's extension label on the namespace, and the names of
    /// platform custom resources naming the namespace by a `createdBy` rule
    /// (an InstallPlan is named after its extension).
    pub(super) fn extensions_by_namespace(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let Some(rules) = &self.profile.helm_executor else {
            return out;
        };
        for ns in &self.inventory.namespaces {
            if let (Some(name), Some(ext)) = (
                &ns.metadata.name,
                ns.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&rules.extension_label)),
            ) {
                out.entry(name.clone()).or_default().insert(ext.clone());
            }
        }
        for rule in &self.profile.namespaces.created_by {
            let Some(crd) = self.inventory.crds.iter().find(|c| c.name() == rule.crd) else {
                continue;
            };
            for instance in &crd.instances {
                let Some(ext) = &instance.metadata.name else {
                    continue;
                };
                for path in &rule.paths {
                    for ns in values_at_path(&instance.data, path) {
                        out.entry(ns).or_default().insert(ext.clone());
                    }
                }
            }
        }
        out
    }

    /// Deletes the executor's leftovers in kept namespaces (in
    /// [`PhaseId::ClusterLeftovers`], with the executor's RBAC); `finish`
    /// then drops any metadata strip planned for the same objects.
    pub(super) fn executor_leftovers(&mut self) {
        let extensions = self.extensions_by_namespace();
        let inventory = self.inventory;
        for list in &inventory.kept_objects {
            for object in &list.objects {
                let Some(ns) = &object.metadata.namespace else {
                    continue;
                };
                if !matches!(self.namespace_fates.get(ns), Some(NamespaceFate::Keep(_))) {
                    continue;
                }
                let Some(exts) = extensions.get(ns) else {
                    continue;
                };
                let proof = self.profile.executor_leftover_proof(
                    &list.resource.group,
                    &list.resource.kind,
                    &object.metadata,
                    exts,
                );
                let (Some(reason), Some(target)) =
                    (proof, ObjectRef::from_object(&list.resource, object))
                else {
                    continue;
                };
                self.strip_and_delete(PhaseId::ClusterLeftovers, target, object, reason);
            }
        }
    }
}
