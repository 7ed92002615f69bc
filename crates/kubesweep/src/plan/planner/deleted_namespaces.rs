//! What deleting a namespace waits for, and what it leaves pointing at it.
//!
//! - Objects inside a namespace the plan deletes that carry the platform's
//!   finalizers: nobody will remove them once the platform is gone, and
//!   under ordered namespace deletion (Kubernetes 1.34+) the namespace
//!   controller deletes pods first and waits for them, so one such pod
//!   blocks everything else. Only the platform's finalizers are stripped;
//!   another program's finalizer is its owner's business, and is reported
//!   by name when the namespace stays (see `execute::stuck`).
//! - Bindings outside the deleted namespaces whose ServiceAccount subjects
//!   live in them: the role goes to whoever re-creates that namespace and
//!   ServiceAccount. The platform's are deleted with the platform's RBAC
//!   ([`Planner::cluster_leftovers`]); every one is reported.

use super::*;

impl Planner<'_> {
    /// Strips the platform's finalizers from objects of non-platform types
    /// (pods first among them) in namespaces the plan deletes, in the
    /// namespace phase: the namespace controller then deletes them.
    pub(super) fn finalizers_in_deleted_namespaces(&mut self) {
        let inventory = self.inventory;
        for list in &inventory.kept_objects {
            // Instances of platform CRDs lose their finalizers in their own phase.
            if self.profile.owns_group(&list.resource.group) {
                continue;
            }
            for object in &list.objects {
                if !object
                    .metadata
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| self.deleted_namespaces.contains(ns))
                {
                    continue;
                }
                let finalizers = self.profile.platform_finalizers(&object.metadata);
                if finalizers.is_empty() {
                    continue;
                }
                let Some(target) = ObjectRef::from_object(&list.resource, object) else {
                    continue;
                };
                let reason = format!(
                    "in a namespace this plan deletes: the platform's finalizer would hold {} (and, for a pod, everything else in the namespace) forever",
                    list.resource.kind
                );
                self.push(
                    PhaseId::Namespaces,
                    target,
                    Operation::StripMetadata {
                        labels: Vec::new(),
                        annotations: Vec::new(),
                        finalizers,
                        owner_reference_uids: Vec::new(),
                    },
                    reason,
                );
            }
        }
    }

    /// Reports every ClusterRoleBinding, and every RoleBinding in a kept
    /// namespace, that binds ServiceAccounts of namespaces the plan deletes.
    /// Runs after the RBAC phase is planned, so it reports what the plan does.
    pub(super) fn dangling_bindings(&mut self) {
        let inventory = self.inventory;
        for (rt, list) in [
            (
                types::cluster_role_binding(),
                &inventory.cluster_role_bindings,
            ),
            (types::role_binding(), &inventory.role_bindings),
        ] {
            for binding in list {
                let home = binding.metadata.namespace.as_deref();
                if home.is_some_and(|ns| self.deleted_namespaces.contains(ns)) {
                    continue;
                }
                let subjects = dangling_subjects(binding, home, &self.deleted_namespaces);
                if subjects.is_empty() {
                    continue;
                }
                let Some(target) = ObjectRef::from_object(&rt, binding) else {
                    continue;
                };
                // What the plan really does, not what a rule would say.
                let removed = self
                    .phases
                    .values()
                    .flatten()
                    .any(|a| a.target.uid == target.uid && a.operation.deletes());
                self.findings.push(Finding::DanglingBinding {
                    role: role_ref(binding),
                    target,
                    subjects,
                    removed,
                });
            }
        }
    }
}

/// `ServiceAccount ns/name` of the subjects of `binding` that live in
/// `deleted` namespaces. A RoleBinding's ServiceAccount subject without a
/// namespace is in the binding's own namespace.
fn dangling_subjects(
    binding: &DynamicObject,
    home: Option<&str>,
    deleted: &BTreeSet<String>,
) -> Vec<String> {
    binding
        .data
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
        .filter_map(|s| {
            let name = s.get("name").and_then(Value::as_str)?;
            let ns = s
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .or(home)?;
            deleted
                .contains(ns)
                .then(|| format!("ServiceAccount {ns}/{name}"))
        })
        .collect()
}

/// `Kind/name` of the role a binding grants.
fn role_ref(binding: &DynamicObject) -> String {
    let field = |f: &str| {
        binding
            .data
            .pointer(&format!("/roleRef/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    format!("{}/{}", field("kind"), field("name"))
}
