//! The CustomResourceDefinitions the fixtures install: the 39 of ks-core 4.x (fact sheet, section 2)
//! and the foreign ones used as decoys, with the minimal schemas that are enough to store instances.

use serde_json::{Value, json};

/// Whether instances of a CRD live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Instances are cluster-scoped.
    Cluster,
    /// Instances live in a namespace.
    Namespaced,
}

/// One CRD: enough to install it and to address its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdDef {
    /// API group, e.g. `iam.kubesphere.io`.
    pub group: &'static str,
    /// Plural resource name, e.g. `globalroles`.
    pub plural: &'static str,
    /// Kind, e.g. `GlobalRole`.
    pub kind: &'static str,
    /// Scope of the instances.
    pub scope: Scope,
    /// The storage version, always served.
    pub storage_version: &'static str,
    /// Further served, non-storage versions.
    pub other_versions: &'static [&'static str],
    /// Finalizers the owning platform puts on instances (empty when none).
    pub finalizers: &'static [&'static str],
}

impl CrdDef {
    /// The CRD's name: `<plural>.<group>`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// `apiVersion` of instances written at the storage version.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.storage_version)
    }

    /// The address of instances at the storage version.
    pub fn api_resource(&self) -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: self.group.to_string(),
            version: self.storage_version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }

    /// Whether instances are namespaced.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The CRD manifest: every version served, one stored, schemas that keep any field.
    ///
    /// Real KubeSphere CRDs carry full schemas; an uninstaller never reads them, and a schema that
    /// preserves unknown fields lets the fixtures store whatever spec and status they need.
    pub fn manifest(&self) -> Value {
        let schema = json!({
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        });
        // Older versions first, as controller-gen writes them; order has no meaning to the server.
        let mut versions: Vec<Value> = self
            .other_versions
            .iter()
            .map(|v| json!({"name": v, "served": true, "storage": false, "schema": schema}))
            .collect();
        versions.push(json!({
            "name": self.storage_version, "served": true, "storage": true, "schema": schema
        }));
        let singular = self.kind.to_ascii_lowercase();
        // As the real manifests carry them. `*.k8s.io` groups are protected: the API server refuses
        // such a CRD without the approval annotation.
        let mut metadata = json!({"name": self.name(), "annotations": {"controller-gen.kubebuilder.io/version": "(unknown)"}});
        if self.group == "app.k8s.io" {
            metadata["annotations"] = json!({
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/application/pull/2",
                "controller-gen.kubebuilder.io/version": "v0.4.0"
            });
            metadata["labels"] = json!({"kubesphere.io/resource-served": "true"});
        }
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": metadata,
            "spec": {
                "group": self.group,
                "names": {
                    "kind": self.kind,
                    "listKind": format!("{}List", self.kind),
                    "plural": self.plural,
                    "singular": singular,
                },
                "scope": match self.scope { Scope::Cluster => "Cluster", Scope::Namespaced => "Namespaced" },
                "versions": versions,
            }
        })
    }
}

const fn crd(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    scope: Scope,
    storage_version: &'static str,
    other_versions: &'static [&'static str],
    finalizers: &'static [&'static str],
) -> CrdDef {
    CrdDef {
        group,
        plural,
        kind,
        scope,
        storage_version,
        other_versions,
        finalizers,
    }
}

use Scope::{Cluster, Namespaced};

/// The 39 CRDs of ks-core 4.x, as in the fact sheet's section 2.
#[rustfmt::skip]
pub const KUBESPHERE_V4_CRDS: &[CrdDef] = &[
    crd("app.k8s.io", "applications", "Application", Namespaced, "v1beta1", &[], &[]),
    crd("application.kubesphere.io", "applicationreleases", "ApplicationRelease", Cluster, "v2", &[], &["helmrelease.application.kubesphere.io"]),
    crd("application.kubesphere.io", "applications", "Application", Cluster, "v2", &[], &[]),
    crd("application.kubesphere.io", "applicationversions", "ApplicationVersion", Cluster, "v2", &[], &["application.kubesphere.io/cleanup", "storeCleanFinalizer.application.kubesphere.io"]),
    crd("application.kubesphere.io", "categories", "Category", Cluster, "v2", &[], &["categories.application.kubesphere.io"]),
    crd("application.kubesphere.io", "repos", "Repo", Cluster, "v2", &[], &[]),
    crd("cluster.kubesphere.io", "clusters", "Cluster", Cluster, "v1alpha1", &[], &["finalizer.cluster.kubesphere.io"]),
    crd("cluster.kubesphere.io", "labels", "Label", Cluster, "v1alpha1", &[], &["finalizers.kubesphere.io/cluster-label"]),
    crd("extensions.kubesphere.io", "apiservices", "APIService", Cluster, "v1alpha1", &[], &[]),
    crd("extensions.kubesphere.io", "extensionentries", "ExtensionEntry", Cluster, "v1alpha1", &[], &[]),
    crd("extensions.kubesphere.io", "jsbundles", "JSBundle", Cluster, "v1alpha1", &[], &[]),
    crd("extensions.kubesphere.io", "reverseproxies", "ReverseProxy", Cluster, "v1alpha1", &[], &[]),
    crd("gateway.kubesphere.io", "ingressclassscopes", "IngressClassScope", Cluster, "v1alpha2", &[], &[]),
    crd("iam.kubesphere.io", "builtinroles", "BuiltinRole", Cluster, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "categories", "Category", Cluster, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "clusterrolebindings", "ClusterRoleBinding", Cluster, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "clusterroles", "ClusterRole", Cluster, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "globalrolebindings", "GlobalRoleBinding", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/globalrolebindings"]),
    crd("iam.kubesphere.io", "globalroles", "GlobalRole", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/globalroles"]),
    crd("iam.kubesphere.io", "groupbindings", "GroupBinding", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/groupsbindings"]),
    crd("iam.kubesphere.io", "groups", "Group", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/groups"]),
    crd("iam.kubesphere.io", "loginrecords", "LoginRecord", Cluster, "v1beta1", &["v1alpha2"], &[]),
    crd("iam.kubesphere.io", "rolebindings", "RoleBinding", Namespaced, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "roles", "Role", Namespaced, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "roletemplates", "RoleTemplate", Cluster, "v1beta1", &[], &[]),
    crd("iam.kubesphere.io", "users", "User", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/users"]),
    crd("iam.kubesphere.io", "workspacerolebindings", "WorkspaceRoleBinding", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/workspacerolebindings"]),
    crd("iam.kubesphere.io", "workspaceroles", "WorkspaceRole", Cluster, "v1beta1", &["v1alpha2"], &["finalizers.kubesphere.io/workspaceroles"]),
    crd("kubesphere.io", "categories", "Category", Cluster, "v1alpha1", &[], &[]),
    crd("kubesphere.io", "extensions", "Extension", Cluster, "v1alpha1", &[], &["kubesphere.io/extension-protection"]),
    crd("kubesphere.io", "extensionversions", "ExtensionVersion", Cluster, "v1alpha1", &[], &[]),
    crd("kubesphere.io", "installplans", "InstallPlan", Cluster, "v1alpha1", &[], &["kubesphere.io/installplan-protection"]),
    crd("kubesphere.io", "repositories", "Repository", Cluster, "v1alpha1", &[], &["kubesphere.io/repository-protection"]),
    crd("kubesphere.io", "serviceaccounts", "ServiceAccount", Namespaced, "v1alpha1", &[], &["finalizers.kubesphere.io/serviceaccount"]),
    crd("quota.kubesphere.io", "resourcequotas", "ResourceQuota", Cluster, "v1alpha2", &[], &[]),
    crd("storage.kubesphere.io", "provisionercapabilities", "ProvisionerCapability", Cluster, "v1alpha1", &[], &[]),
    crd("storage.kubesphere.io", "storageclasscapabilities", "StorageClassCapability", Cluster, "v1alpha1", &[], &[]),
    crd("tenant.kubesphere.io", "workspaces", "Workspace", Cluster, "v1beta1", &["v1alpha1"], &["kubesphere.io/cascading-deletion"]),
    crd("tenant.kubesphere.io", "workspacetemplates", "WorkspaceTemplate", Cluster, "v1beta1", &["v1alpha2"], &["kubesphere.io/cascading-deletion"]),
];

/// A representative subset of the ks-core 3.4 CRDs (fact sheet, section 9) and the ks-installer CRD,
/// at the versions 3.x stored them (before 4.x moved most groups to `v1beta1`), with the 3.x
/// finalizers.
#[rustfmt::skip]
pub const KUBESPHERE_V3_CRDS: &[CrdDef] = &[
    crd("installer.kubesphere.io", "clusterconfigurations", "ClusterConfiguration", Namespaced, "v1alpha1", &[], &[]),
    crd("iam.kubesphere.io", "users", "User", Cluster, "v1alpha2", &[], &["finalizers.kubesphere.io/users"]),
    crd("iam.kubesphere.io", "globalroles", "GlobalRole", Cluster, "v1alpha2", &[], &[]),
    crd("iam.kubesphere.io", "globalrolebindings", "GlobalRoleBinding", Cluster, "v1alpha2", &[], &[]),
    crd("iam.kubesphere.io", "workspaceroles", "WorkspaceRole", Cluster, "v1alpha2", &[], &[]),
    crd("iam.kubesphere.io", "workspacerolebindings", "WorkspaceRoleBinding", Cluster, "v1alpha2", &[], &[]),
    crd("tenant.kubesphere.io", "workspaces", "Workspace", Cluster, "v1alpha1", &[], &["finalizers.tenant.kubesphere.io"]),
    crd("tenant.kubesphere.io", "workspacetemplates", "WorkspaceTemplate", Cluster, "v1alpha2", &[], &["finalizers.workspacetemplate.kubesphere.io", "orphan.finalizers.kubesphere.io"]),
    crd("cluster.kubesphere.io", "clusters", "Cluster", Cluster, "v1alpha1", &[], &["finalizer.cluster.kubesphere.io"]),
    crd("network.kubesphere.io", "ippools", "IPPool", Cluster, "v1alpha1", &[], &["finalizers.network.kubesphere.io/ippool"]),
    crd("quota.kubesphere.io", "resourcequotas", "ResourceQuota", Cluster, "v1alpha2", &[], &[]),
    crd("alerting.kubesphere.io", "rulegroups", "RuleGroup", Namespaced, "v2beta1", &[], &[]),
];

/// CRDs KubeSphere 3.x installs but other software shares: a cleanup keeps them by default.
#[rustfmt::skip]
pub const SHARED_V3_CRDS: &[CrdDef] = &[
    crd("monitoring.coreos.com", "prometheusrules", "PrometheusRule", Namespaced, "v1", &[], &[]),
];

/// Foreign CRDs that must survive any KubeSphere cleanup: another vendor's group, and two groups
/// that only *look* like KubeSphere's (`notkubesphere.io` shares a suffix without the dot boundary,
/// `kubesphere.io.example.com` contains it as a prefix).
#[rustfmt::skip]
pub const FOREIGN_CRDS: &[CrdDef] = &[
    crd("acme.example.com", "widgets", "Widget", Namespaced, "v1", &[], &["acme.example.com/protect"]),
    crd("acme.example.com", "gadgets", "Gadget", Cluster, "v1", &["v1beta1"], &["acme.example.com/protect"]),
    crd("notkubesphere.io", "workspaces", "Workspace", Cluster, "v1", &[], &["notkubesphere.io/cleanup"]),
    crd("kubesphere.io.example.com", "users", "User", Namespaced, "v1alpha1", &[], &["kubesphere.io.example.com/guard"]),
];

/// Looks a KubeSphere CRD up by group and plural.
pub fn kubesphere_crd(group: &str, plural: &str) -> &'static CrdDef {
    KUBESPHERE_V4_CRDS
        .iter()
        .chain(FOREIGN_CRDS)
        .find(|c| c.group == group && c.plural == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}.{group} in the fixture tables"))
}

/// Looks a 3.x CRD (KubeSphere's, shared or foreign) up by group and plural.
pub fn kubesphere_v3_crd(group: &str, plural: &str) -> &'static CrdDef {
    KUBESPHERE_V3_CRDS
        .iter()
        .chain(SHARED_V3_CRDS)
        .chain(FOREIGN_CRDS)
        .find(|c| c.group == group && c.plural == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}.{group} in the 3.x fixture tables"))
}

/// Every CRD definition the fixtures know under one name (4.x and 3.x may store it at different
/// versions).
pub(crate) fn definitions(name: &str) -> impl Iterator<Item = &'static CrdDef> + '_ {
    KUBESPHERE_V4_CRDS
        .iter()
        .chain(KUBESPHERE_V3_CRDS)
        .chain(SHARED_V3_CRDS)
        .chain(FOREIGN_CRDS)
        .filter(move |c| c.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn kubesphere_table_matches_the_fact_sheet_counts() {
        assert_eq!(KUBESPHERE_V4_CRDS.len(), 39);
        let namespaced: Vec<_> = KUBESPHERE_V4_CRDS
            .iter()
            .filter(|c| c.namespaced())
            .map(CrdDef::name)
            .collect();
        assert_eq!(
            namespaced,
            [
                "applications.app.k8s.io",
                "rolebindings.iam.kubesphere.io",
                "roles.iam.kubesphere.io",
                "serviceaccounts.kubesphere.io"
            ]
        );
        assert_eq!(KUBESPHERE_V4_CRDS.len() - namespaced.len(), 35);
        let names: BTreeSet<_> = KUBESPHERE_V4_CRDS.iter().map(CrdDef::name).collect();
        assert_eq!(names.len(), 39, "names are unique");
    }

    #[test]
    fn every_kubesphere_finalizer_names_kubesphere() {
        for c in KUBESPHERE_V4_CRDS {
            for f in c.finalizers {
                assert!(f.contains("kubesphere.io"), "{f} on {}", c.name());
            }
        }
    }

    #[test]
    fn manifest_serves_every_version_and_stores_one() {
        let m = kubesphere_crd("iam.kubesphere.io", "globalroles").manifest();
        let versions = m["spec"]["versions"].as_array().expect("versions");
        let names: Vec<_> = versions
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(names, ["v1alpha2", "v1beta1"]);
        assert_eq!(versions.iter().filter(|v| v["storage"] == true).count(), 1);
        assert!(versions.iter().all(|v| v["served"] == true));
        assert_eq!(m["metadata"]["name"], "globalroles.iam.kubesphere.io");
        assert_eq!(m["spec"]["scope"], "Cluster");
    }

    #[test]
    fn foreign_groups_are_not_kubesphere_groups() {
        for c in FOREIGN_CRDS {
            let g = c.group;
            assert!(
                g != "kubesphere.io" && !g.ends_with(".kubesphere.io"),
                "{g}"
            );
        }
    }
}
