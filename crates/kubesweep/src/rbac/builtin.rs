//! The resource types Kubernetes itself serves (v1.37, the API level
//! k8s-openapi is built for), with what matters for RBAC: scope and whether
//! they can be listed. RBAC names every resource exactly, so the generated
//! ClusterRole needs this table; preflight uses it too, to ask only for
//! `list` on types that have one (a review type such as `tokenreviews` can
//! only be created).
//!
//! A type newer than this table (a later Kubernetes) is treated like any
//! other type the table does not know: preflight asks for `list` on it, and
//! when the role lacks it the run stops naming that permission.

/// One built-in type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinType {
    /// API group; empty for core.
    pub group: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the type serves `list` (review types only serve `create`).
    pub listable: bool,
    /// Whether Kubernetes' default RBAC already lets every authenticated
    /// user read it (the bootstrap ClusterRole
    /// `system:cluster-trust-bundle-discovery`): a rule would add nothing.
    pub read_by_everyone: bool,
}

const fn t(group: &'static str, plural: &'static str, namespaced: bool) -> BuiltinType {
    BuiltinType {
        group,
        plural,
        namespaced,
        listable: true,
        read_by_everyone: false,
    }
}

const fn create_only(group: &'static str, plural: &'static str, namespaced: bool) -> BuiltinType {
    BuiltinType {
        group,
        plural,
        namespaced,
        listable: false,
        read_by_everyone: false,
    }
}

const fn public(group: &'static str, plural: &'static str, namespaced: bool) -> BuiltinType {
    BuiltinType {
        group,
        plural,
        namespaced,
        listable: true,
        read_by_everyone: true,
    }
}

/// Every type kube-apiserver v1.37 serves at its groups' preferred versions
/// with the default feature gates (as `kubectl api-resources` lists them).
pub const BUILTIN_TYPES: &[BuiltinType] = &[
    create_only("", "bindings", true),
    t("", "componentstatuses", false),
    t("", "configmaps", true),
    t("", "endpoints", true),
    t("", "events", true),
    t("", "limitranges", true),
    t("", "namespaces", false),
    t("", "nodes", false),
    t("", "persistentvolumeclaims", true),
    t("", "persistentvolumes", false),
    t("", "pods", true),
    t("", "podtemplates", true),
    t("", "replicationcontrollers", true),
    t("", "resourcequotas", true),
    t("", "secrets", true),
    t("", "serviceaccounts", true),
    t("", "services", true),
    t(
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicies",
        false,
    ),
    t(
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
        false,
    ),
    t(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
    ),
    t(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        false,
    ),
    t(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        false,
    ),
    t(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        false,
    ),
    t("apiextensions.k8s.io", "customresourcedefinitions", false),
    t("apiregistration.k8s.io", "apiservices", false),
    t("apps", "controllerrevisions", true),
    t("apps", "daemonsets", true),
    t("apps", "deployments", true),
    t("apps", "replicasets", true),
    t("apps", "statefulsets", true),
    create_only("authentication.k8s.io", "selfsubjectreviews", false),
    create_only("authentication.k8s.io", "tokenreviews", false),
    create_only("authorization.k8s.io", "localsubjectaccessreviews", true),
    create_only("authorization.k8s.io", "selfsubjectaccessreviews", false),
    create_only("authorization.k8s.io", "selfsubjectrulesreviews", false),
    create_only("authorization.k8s.io", "subjectaccessreviews", false),
    t("autoscaling", "horizontalpodautoscalers", true),
    t("batch", "cronjobs", true),
    t("batch", "jobs", true),
    t("certificates.k8s.io", "certificatesigningrequests", false),
    public("certificates.k8s.io", "clustertrustbundles", false),
    t("certificates.k8s.io", "podcertificaterequests", true),
    t("coordination.k8s.io", "leases", true),
    t("discovery.k8s.io", "endpointslices", true),
    t("events.k8s.io", "events", true),
    t("flowcontrol.apiserver.k8s.io", "flowschemas", false),
    t(
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
        false,
    ),
    t("networking.k8s.io", "ingressclasses", false),
    t("networking.k8s.io", "ingresses", true),
    t("networking.k8s.io", "ipaddresses", false),
    t("networking.k8s.io", "networkpolicies", true),
    t("networking.k8s.io", "servicecidrs", false),
    t("node.k8s.io", "runtimeclasses", false),
    t("policy", "poddisruptionbudgets", true),
    t("rbac.authorization.k8s.io", "clusterrolebindings", false),
    t("rbac.authorization.k8s.io", "clusterroles", false),
    t("rbac.authorization.k8s.io", "rolebindings", true),
    t("rbac.authorization.k8s.io", "roles", true),
    t("resource.k8s.io", "deviceclasses", false),
    t("resource.k8s.io", "devicetaintrules", false),
    t("resource.k8s.io", "resourceclaims", true),
    t("resource.k8s.io", "resourceclaimtemplates", true),
    t("resource.k8s.io", "resourceslices", false),
    t("scheduling.k8s.io", "priorityclasses", false),
    t("storage.k8s.io", "csidrivers", false),
    t("storage.k8s.io", "csinodes", false),
    t("storage.k8s.io", "csistoragecapacities", true),
    t("storage.k8s.io", "storageclasses", false),
    t("storage.k8s.io", "volumeattachments", false),
    t("storage.k8s.io", "volumeattributesclasses", false),
    t("storagemigration.k8s.io", "storageversionmigrations", false),
];

/// The table's entry for `group` + `plural`, if Kubernetes serves it.
pub fn find(group: &str, plural: &str) -> Option<&'static BuiltinType> {
    BUILTIN_TYPES
        .iter()
        .find(|b| b.group == group && b.plural == plural)
}

/// Whether a served type can be listed: every type but Kubernetes'
/// create-only ones (types the table does not know are assumed listable).
pub fn is_listable(group: &str, plural: &str) -> bool {
    find(group, plural).is_none_or(|b| b.listable)
}
