//! The profile format: a declarative description of what a platform puts in a
//! cluster. Every rule here is a *proof* of ownership (a group or domain on a
//! dot boundary, an exact name, a service reference, an owner reference, a
//! label key only the platform uses), never a substring guess.
//!
//! Unknown keys are rejected everywhere so a typo cannot silently disable a
//! rule (the failure mode of kubesphere#6180, where an empty list made the
//! whole cleanup a no-op).

use serde::{Deserialize, Serialize};

/// A platform's footprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// Short name, e.g. `kubesphere`.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Domains that are the platform's: a finalizer, label key or API group
    /// belongs to the platform when its domain equals one of these or ends
    /// with `.` + one of these (e.g. `kubesphere.io`).
    pub domains: Vec<String>,
    /// The platform's API groups, named one by one. Ownership matches groups
    /// by domain, but Kubernetes RBAC cannot: a rule names each group
    /// exactly. These are the groups the generated ClusterRole
    /// ([`crate::rbac`]) grants; each must lie within `domains`. A platform
    /// group missing here is not granted, and preflight names the permission
    /// it lacks on that group's types (exit 4) before anything changes.
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// CRD rules.
    pub crds: CrdRules,
    /// Finalizer rules.
    #[serde(default)]
    pub finalizers: FinalizerRules,
    /// Namespace rules.
    pub namespaces: NamespaceRules,
    /// Metadata removed from objects that are kept.
    #[serde(default)]
    pub metadata: MetadataRules,
    /// Admission webhook ownership.
    #[serde(default)]
    pub webhooks: WebhookRules,
    /// Aggregated APIService ownership.
    #[serde(default)]
    pub api_services: ApiServiceRules,
    /// RBAC ownership.
    #[serde(default)]
    pub rbac: RbacRules,
    /// CertificateSigningRequest ownership.
    #[serde(default)]
    pub csrs: CsrRules,
    /// Platform controllers: reported in preflight when they still run.
    #[serde(default)]
    pub controllers: Vec<NamespacedName>,
    /// Helm releases of the platform and its extensions.
    #[serde(default)]
    pub helm: HelmRules,
    /// Leftovers of the platform's per-extension Helm executor, removed from
    /// extension namespaces that are kept (deleted ones take them along).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_executor: Option<HelmExecutorRules>,
    /// Kinds of platform custom resources that register *other* clusters
    /// (KubeSphere's `Cluster` of `cluster.kubesphere.io`): deleted in their
    /// own phase after every other custom resource. They must still be
    /// platform instances by the CRD rules; this only orders them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_registrations: Vec<GroupKind>,
    /// Objects never touched, whatever else matches.
    #[serde(default)]
    pub protected: ProtectedRules,
}

/// A namespace and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacedName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Which CRDs are the platform's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrdRules {
    /// API groups owned, matched on a dot boundary (`kubesphere.io` matches
    /// `iam.kubesphere.io`, not `notkubesphere.io`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Exact CRD names owned (`plural.group`), for groups not owned as a whole.
    #[serde(default)]
    pub names: Vec<String>,
    /// CRDs that other software may use too.
    #[serde(default)]
    pub shared: Vec<SharedCrdRule>,
}

/// A shared CRD (or group of CRDs): removed only when asked to and when no
/// foreign instance exists.
///
/// An instance is the platform's (not foreign) when it lives in a namespace
/// the plan deletes, or carries one of `platformLabels` / `platformAnnotations`
/// (keys only the platform writes), or carries a platform finalizer. Every
/// other instance is foreign, and one foreign instance keeps the CRD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SharedCrdRule {
    /// Exact CRD name; exactly one of `name` and `group` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API group on a dot boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Label keys proving an instance is the platform's.
    #[serde(default)]
    pub platform_labels: Vec<String>,
    /// Annotation keys proving an instance is the platform's.
    #[serde(default)]
    pub platform_annotations: Vec<String>,
    /// Why it is shared (shown in findings).
    #[serde(default)]
    pub note: String,
}

/// Which finalizers are the platform's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FinalizerRules {
    /// Extra domains (besides the profile's `domains`) whose finalizers are
    /// the platform's; the domain is the part before the first `/`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Exact finalizer values.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Which namespaces are deleted and which are kept and cleaned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceRules {
    /// Exact names of namespaces the platform creates: deleted.
    #[serde(default)]
    pub delete: Vec<String>,
    /// Namespaces deleted only with proof: name prefix AND a label key.
    #[serde(default)]
    pub delete_when: Vec<NamespaceProofRule>,
    /// Fields of platform custom resources naming namespaces the platform
    /// may have created (e.g. an InstallPlan's target namespace). A name is
    /// not a proof: such a namespace is deleted only when everything in it
    /// is the platform's or a removed release's, else kept and cleaned.
    #[serde(default)]
    pub created_by: Vec<NamespaceFieldRule>,
    /// Label whose presence marks a user project (kept, cleaned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_label: Option<String>,
    /// Values of `projectLabel` that mark platform namespaces, not projects.
    #[serde(default)]
    pub system_project_values: Vec<String>,
}

/// Delete a namespace whose name starts with `prefix` and that carries one of `labels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceProofRule {
    /// Name prefix, e.g. `extension-`.
    pub prefix: String,
    /// Label keys; one must be present.
    pub labels: Vec<String>,
}

/// Namespaces named in fields of a platform CRD's instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceFieldRule {
    /// CRD name, e.g. `installplans.kubesphere.io`.
    pub crd: String,
    /// Dotted field paths; `*` steps into every value of a map or list,
    /// e.g. `status.clusterSchedulingStatuses.*.targetNamespace`.
    pub paths: Vec<String>,
}

/// Metadata the platform writes on objects it does not own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataRules {
    /// Label keys removed from every kept object, namespaces included (exact keys).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Annotation keys removed from every kept object (exact keys).
    #[serde(default)]
    pub annotations: Vec<String>,
    /// Label keys the platform writes on namespaces: removed from kept
    /// namespaces only, because on other objects they may be the customer's
    /// own (`kubesphere.io/managed=true`, kubesphere#6361).
    #[serde(default)]
    pub namespace_labels: Vec<String>,
    /// Annotation keys removed from kept namespaces only.
    #[serde(default)]
    pub namespace_annotations: Vec<String>,
    /// Owner references removed from kept objects.
    #[serde(default)]
    pub owner_references: OwnerReferenceRules,
}

/// Which owner references point at the platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OwnerReferenceRules {
    /// Owner API groups on a dot boundary (besides the profile's `domains`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Owners of a shared type: only removed when the owner object (by UID) is
    /// a platform instance of that shared CRD.
    #[serde(default)]
    pub shared_kinds: Vec<GroupKind>,
}

/// An API group and kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKind {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// Which webhook configurations are the platform's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookRules {
    /// Services the platform's webhooks call. A configuration whose webhooks
    /// call one of these (or a service in a namespace being deleted) is the
    /// platform's.
    #[serde(default)]
    pub services: Vec<NamespacedName>,
    /// Exact configuration names.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Which aggregated APIServices are the platform's. Besides these rules, any
/// APIService backed by a service in a namespace being deleted is, because it
/// would break discovery; never one merely because it is unavailable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServiceRules {
    /// Backing services.
    #[serde(default)]
    pub services: Vec<NamespacedName>,
}

/// Which RBAC objects are the platform's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RbacRules {
    /// Exact names of ClusterRoles and ClusterRoleBindings.
    #[serde(default)]
    pub names: Vec<String>,
    /// Name patterns for every RBAC kind; `*` matches one or more characters.
    #[serde(default)]
    pub name_patterns: Vec<String>,
    /// Label keys (patterns allowed) only the platform writes.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Annotation keys (patterns allowed) only the platform writes.
    #[serde(default)]
    pub annotations: Vec<String>,
}

/// Which CSRs are the platform's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CsrRules {
    /// Label keys; one present proves it.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Which Helm releases are the platform's (see [`crate::helm`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmRules {
    /// Releases of the platform itself; their workloads are the platform's
    /// controllers and are deleted first.
    #[serde(default)]
    pub releases: Vec<NamespacedName>,
    /// Where platform custom resources name extension releases of this
    /// cluster (e.g. an InstallPlan's `status.releaseName`); the release's
    /// namespace is the sibling field [`HelmRules::namespace_field`].
    #[serde(default)]
    pub extension_releases: Vec<NamespaceFieldRule>,
    /// Where releases installed in *other* (member) clusters are named: only
    /// reported, since they cannot be removed from here.
    #[serde(default)]
    pub member_releases: Vec<NamespaceFieldRule>,
    /// Sibling field holding the namespace of a release named by
    /// `extensionReleases` (`targetNamespace` for InstallPlans).
    #[serde(default = "default_namespace_field")]
    pub namespace_field: String,
    /// Suffixes of companion releases installed with each extension release
    /// in the same namespace (`-agent`).
    #[serde(default)]
    pub companion_suffixes: Vec<String>,
    /// Label keys only the platform writes, whose value names an extension:
    /// a release an object of whose manifest carries one with a value naming
    /// the release (`<ext>`, or `<ext>` plus a companion suffix) is the
    /// platform's. The key alone on one object proves nothing.
    #[serde(default)]
    pub labels: Vec<String>,
    /// CRDs (`plural.group`) the platform's own release ships in its chart:
    /// with `--keep-extensions`, only these and the CRDs the platform's own
    /// release record names are removed (extensions may bring CRDs their
    /// records do not name), also after that record is gone.
    #[serde(default)]
    pub platform_crds: Vec<String>,
}

impl Default for HelmRules {
    fn default() -> Self {
        Self {
            releases: Vec::new(),
            extension_releases: Vec::new(),
            member_releases: Vec::new(),
            namespace_field: default_namespace_field(),
            companion_suffixes: Vec::new(),
            labels: Vec::new(),
            platform_crds: Vec::new(),
        }
    }
}

fn default_namespace_field() -> String {
    "targetNamespace".to_owned()
}

/// What a platform's Helm executor leaves in an extension's namespace: the
/// Jobs that ran `helm`, their ConfigMaps, and the ServiceAccount it acts as.
///
/// Every proof ties the object to one extension `<ext>` of its namespace (the
/// namespace's `extensionLabel` value, or a platform custom resource naming
/// the namespace by a `namespaces.createdBy` rule, named after `<ext>`):
/// - a Job or ConfigMap of one of `kinds`, named `<prefix><ext>-<suffix>` for
///   one of `namePrefixes`, carrying every one of `labels` AND
///   `extensionLabel=<ext>`, or else an owner reference of kind `ownerKind`
///   named `<ext>` in a platform group (the executor's uninstall ConfigMap
///   has no labels);
/// - a ServiceAccount named exactly `<serviceAccountPrefix><ext>`.
///
/// One of the labels alone (`kubesphere.io/managed=true`) never proves
/// anything: customers use it too (kubesphere#6361).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelmExecutorRules {
    /// Label key whose value names the extension, e.g. `kubesphere.io/extension-ref`.
    pub extension_label: String,
    /// Labels (key and value) every executor Job and ConfigMap also carries.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Kinds of the executor's objects, besides the ServiceAccount.
    pub kinds: Vec<GroupKind>,
    /// Name prefixes before `<ext>-`, one per executor action
    /// (`helm-install-`, `helm-upgrade-`, `helm-uninstall-`).
    pub name_prefixes: Vec<String>,
    /// Kind of the platform object that owns the executor's objects
    /// (`InstallPlan`, named after the extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<String>,
    /// ServiceAccount name prefix before `<ext>` (`helm-executor.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_prefix: Option<String>,
}

/// What is never touched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectedRules {
    /// Namespaces never deleted or finalized (only cleaned). `default`,
    /// `kube-system`, `kube-public` and `kube-node-lease` are always protected.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Individual objects never changed.
    #[serde(default)]
    pub objects: Vec<ProtectedObject>,
}

/// One protected object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedObject {
    /// Kind, e.g. `ClusterRole`.
    pub kind: String,
    /// Namespace, for namespaced kinds (absent matches any namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}
