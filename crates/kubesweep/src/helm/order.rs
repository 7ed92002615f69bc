//! The order `helm uninstall` deletes a release's objects in: by kind, the
//! reverse of the install order (front ends and workloads before the RBAC,
//! configuration and service accounts they use), unknown kinds last.
//! Helm sends the deletes one after another without waiting; kubesweep keeps
//! what matters of that order with two phases: workloads (and what routes to
//! them) first, so controllers stop before the RBAC and configuration they
//! use disappear, then everything else, concurrently.

/// Kinds in the order Helm uninstalls them.
const UNINSTALL_ORDER: &[&str] = &[
    "APIService",
    "Ingress",
    "IngressClass",
    "Service",
    "CronJob",
    "Job",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
    "DaemonSet",
    "RoleBinding",
    "Role",
    "ClusterRoleBinding",
    "ClusterRole",
    "CustomResourceDefinition",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "StorageClass",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "PodDisruptionBudget",
    "PodSecurityPolicy",
    "LimitRange",
    "ResourceQuota",
    "NetworkPolicy",
    "Namespace",
    "PriorityClass",
];

/// Position of `kind` in Helm's uninstall order; unknown kinds (custom
/// resources, webhooks...) come after every known one.
pub fn uninstall_rank(kind: &str) -> usize {
    UNINSTALL_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(UNINSTALL_ORDER.len())
}

/// Whether `kind` is deleted in the first wave: front ends and workloads,
/// up to and including DaemonSets in Helm's order.
pub fn is_workload(kind: &str) -> bool {
    uninstall_rank(kind) <= uninstall_rank("DaemonSet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_before_their_rbac_and_config() {
        assert!(uninstall_rank("Deployment") < uninstall_rank("ClusterRole"));
        assert!(uninstall_rank("Service") < uninstall_rank("Deployment"));
        assert!(uninstall_rank("ConfigMap") < uninstall_rank("ServiceAccount"));
        assert_eq!(uninstall_rank("Widget"), UNINSTALL_ORDER.len());
    }
}
