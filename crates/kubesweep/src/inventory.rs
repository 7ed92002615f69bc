//! The inventory: everything discovery observed that the planner may act on.
//!
//! This is the contract between discovery (cluster I/O, fills it) and the
//! planner (pure, reads it). Objects are kept whole as [`DynamicObject`]s so
//! the planner can read any field (conversion, conditions, owner references)
//! and backups can store exactly what was seen.
//!
//! Discovery may include more than the profile matches (for example every
//! namespace or every ClusterRole): the planner only acts on objects whose
//! ownership the profile proves, so over-inclusion is safe, while omission
//! makes the plan incomplete. Each list documents what discovery is expected
//! to put in it.

use crate::resource::ResourceType;
use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};

/// Identity of the cluster a plan was made for; a plan is refused on any other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// UID of the `kube-system` namespace: stable for the life of the cluster.
    pub kube_system_uid: String,
    /// API server URL, for humans (a cluster may be reached by several URLs).
    #[serde(default)]
    pub server: String,
    /// kubeconfig context name, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// A CRD and the instances discovery listed for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrdInventory {
    /// The full CustomResourceDefinition object (spec.conversion,
    /// status.conditions, status.storedVersions are read from here).
    pub crd: DynamicObject,
    /// The type used to list instances (the storage or a served version);
    /// `None` when no version is served and instances could not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceType>,
    /// Every instance, in all namespaces.
    #[serde(default)]
    pub instances: Vec<DynamicObject>,
    /// `false` when listing instances failed (a [`DiscoveryIssue::ListFailed`]
    /// says why); the planner then knows `instances` may be incomplete.
    #[serde(default = "default_true")]
    pub instances_listed: bool,
}

fn default_true() -> bool {
    true
}

impl CrdInventory {
    /// The CRD's name (`plural.group`).
    pub fn name(&self) -> &str {
        self.crd.metadata.name.as_deref().unwrap_or_default()
    }

    /// `spec.group`.
    pub fn group(&self) -> &str {
        self.crd
            .data
            .pointer("/spec/group")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// `spec.scope == "Namespaced"`.
    pub fn namespaced(&self) -> bool {
        self.crd
            .data
            .pointer("/spec/scope")
            .and_then(|v| v.as_str())
            == Some("Namespaced")
    }

    /// Whether `spec.conversion.strategy` is `Webhook`.
    pub fn has_conversion_webhook(&self) -> bool {
        self.crd
            .data
            .pointer("/spec/conversion/strategy")
            .and_then(|v| v.as_str())
            == Some("Webhook")
    }

    /// `status.storedVersions`.
    pub fn stored_versions(&self) -> Vec<String> {
        string_list(self.crd.data.pointer("/status/storedVersions"))
    }

    /// Whether the `Established` condition is `True`.
    pub fn established(&self) -> bool {
        condition_status(&self.crd, "Established") == Some("True")
    }
}

/// A list of objects of one type (used where the type is not fixed, e.g.
/// user workloads in kept namespaces).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObservedList {
    /// The type the objects were listed as.
    pub resource: ResourceType,
    /// The objects.
    #[serde(default)]
    pub objects: Vec<DynamicObject>,
}

/// Every object of every listable namespaced type in one namespace
/// (metadata only), and what could not be listed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceContent {
    /// The namespace.
    pub namespace: String,
    /// Non-empty lists, one per type.
    pub objects: Vec<ObservedList>,
    /// Why the listing may be incomplete (a broken API group, a failed
    /// list); empty when every served type was listed.
    pub gaps: Vec<String>,
}

impl NamespaceContent {
    /// Whether every served namespaced type was listed.
    pub fn complete(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Every object with its type.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceType, &DynamicObject)> {
        self.objects
            .iter()
            .flat_map(|l| l.objects.iter().map(move |o| (&l.resource, o)))
    }
}

/// Something discovery could not see; the plan reports it as a finding
/// instead of failing, because one broken API group must not stop cleanup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DiscoveryIssue {
    /// An API group/version failed discovery (typically an aggregated
    /// APIService whose backend is gone).
    ApiGroupUnavailable {
        /// `group/version`.
        group_version: String,
        /// The error as reported.
        message: String,
    },
    /// A list call failed.
    ListFailed {
        /// `plural.group` of the type.
        resource: String,
        /// Namespace, when the list was namespaced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// The error as reported.
        message: String,
    },
}

/// Everything discovery observed, grouped by the role the planner gives it.
///
/// Fixed-type lists hold objects of the types named by the functions in
/// [`types`]; discovery should list them with those types so references in
/// the plan address the same versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Inventory {
    /// Which cluster this is.
    pub cluster: ClusterIdentity,
    /// Every resource type discovery found served (used to skip kinds that no
    /// longer exist and to report what was scanned).
    pub resource_types: Vec<ResourceType>,
    /// CRDs: at least every CRD the profile matches as owned or shared
    /// ([`crate::profile::Profile::crd_role`]), and every CRD a selected Helm
    /// release brought, with all their instances (a release's CRD outside
    /// the platform's groups goes only when no foreign instance uses it).
    pub crds: Vec<CrdInventory>,
    /// All namespaces (v1 Namespace).
    pub namespaces: Vec<DynamicObject>,
    /// All ValidatingWebhookConfigurations.
    pub validating_webhooks: Vec<DynamicObject>,
    /// All MutatingWebhookConfigurations.
    pub mutating_webhooks: Vec<DynamicObject>,
    /// All APIServices (apiregistration.k8s.io/v1).
    pub api_services: Vec<DynamicObject>,
    /// All ClusterRoles.
    pub cluster_roles: Vec<DynamicObject>,
    /// All ClusterRoleBindings.
    pub cluster_role_bindings: Vec<DynamicObject>,
    /// Roles in namespaces that are kept (those in deleted namespaces go with
    /// their namespace; including them is harmless).
    pub roles: Vec<DynamicObject>,
    /// RoleBindings, as for `roles`.
    pub role_bindings: Vec<DynamicObject>,
    /// CertificateSigningRequests (all, or those with the profile's CSR labels).
    pub csrs: Vec<DynamicObject>,
    /// apps/v1 Deployments of the platform controllers the profile names
    /// ([`crate::profile::Profile::controllers`]); absent ones are simply omitted.
    pub controllers: Vec<DynamicObject>,
    /// Objects of any type, in every namespace, that carry platform
    /// metadata ([`crate::profile::Profile::carries_platform_metadata`]) or
    /// may be helm-executor leftovers by name
    /// ([`crate::profile::Profile::may_be_executor_leftover`]). In kept
    /// namespaces they are cleaned; in namespaces the plan deletes, only
    /// their platform finalizers matter (they would block the deletion).
    pub kept_objects: Vec<ObservedList>,
    /// Every PersistentVolumeClaim (v1), all namespaces, metadata only: which
    /// namespaces hold data. Not acted on, so not in [`Inventory::objects`].
    /// When the list failed, a [`DiscoveryIssue::ListFailed`] for
    /// [`types::persistent_volume_claim`] says so.
    pub volume_claims: Vec<DynamicObject>,
    /// Cluster-scoped objects of the types no other list covers (nodes,
    /// PersistentVolumes, other software's cluster-scoped resources...) whose
    /// owner references name a platform kind, metadata only. Not acted on
    /// (so not in [`Inventory::objects`]): an owner they name is deleted with
    /// Orphan propagation, so the garbage collector never deletes them.
    pub owned_cluster_objects: Vec<ObservedList>,
    /// Helm releases: every release summarised, live objects of the ones the
    /// profile selects ([`crate::helm::select_releases`]).
    pub helm: crate::helm::HelmInventory,
    /// Everything in each namespace that platform objects merely name
    /// ([`crate::plan::namespaces_named_by_platform`]) and no other rule
    /// proves the platform's, metadata only: such a namespace is deleted
    /// only when all of it is the platform's. Not acted on through this
    /// list, so not in [`Inventory::objects`].
    pub namespace_contents: Vec<NamespaceContent>,
    /// What discovery could not see.
    pub issues: Vec<DiscoveryIssue>,
}

impl Inventory {
    /// An inventory for `cluster` with nothing in it (a clean cluster).
    pub fn empty(cluster: ClusterIdentity) -> Self {
        Self {
            cluster,
            ..Self::default()
        }
    }

    /// Every object the inventory holds, with the type it was read as.
    ///
    /// The one place that knows all the lists, so the indexes built from it
    /// (staleness check, verification, backup) miss nothing when a list is
    /// added. `volume_claims` is left out on purpose: the plan never acts on
    /// a claim through it (a claim that goes, goes with its namespace or its
    /// Helm release, both listed here), so it must neither make a plan stale
    /// nor be verified nor backed up on its own. Objects held whole come first; the metadata-only scan of kept
    /// namespaces (`kept_objects`) comes last, so an index that keeps the
    /// first entry per UID keeps the whole object.
    pub fn objects(&self) -> Vec<(ResourceType, &DynamicObject)> {
        let fixed = [
            (types::namespace(), &self.namespaces),
            (types::validating_webhook(), &self.validating_webhooks),
            (types::mutating_webhook(), &self.mutating_webhooks),
            (types::api_service(), &self.api_services),
            (types::cluster_role(), &self.cluster_roles),
            (types::cluster_role_binding(), &self.cluster_role_bindings),
            (types::role(), &self.roles),
            (types::role_binding(), &self.role_bindings),
            (types::csr(), &self.csrs),
            (types::deployment(), &self.controllers),
        ];
        let mut out: Vec<(ResourceType, &DynamicObject)> = Vec::new();
        for (resource, list) in fixed {
            out.extend(list.iter().map(|o| (resource.clone(), o)));
        }
        for crd in &self.crds {
            out.push((types::crd(), &crd.crd));
            if let Some(resource) = &crd.resource {
                out.extend(crd.instances.iter().map(|o| (resource.clone(), o)));
            }
        }
        for release in &self.helm.releases {
            out.extend(release.live.iter().map(|l| (l.resource.clone(), &l.object)));
            out.extend(
                release
                    .records
                    .iter()
                    .map(|r| (crate::helm::record_type(r), r)),
            );
        }
        for list in &self.kept_objects {
            out.extend(list.objects.iter().map(|o| (list.resource.clone(), o)));
        }
        out
    }

    /// [`Inventory::objects`], consuming the inventory: the same objects in
    /// the same order, owned, so a caller that converts them one by one (the
    /// backup) never holds the inventory and its conversion whole at once.
    pub fn into_objects(self) -> Vec<(ResourceType, DynamicObject)> {
        let fixed = [
            (types::namespace(), self.namespaces),
            (types::validating_webhook(), self.validating_webhooks),
            (types::mutating_webhook(), self.mutating_webhooks),
            (types::api_service(), self.api_services),
            (types::cluster_role(), self.cluster_roles),
            (types::cluster_role_binding(), self.cluster_role_bindings),
            (types::role(), self.roles),
            (types::role_binding(), self.role_bindings),
            (types::csr(), self.csrs),
            (types::deployment(), self.controllers),
        ];
        let mut out: Vec<(ResourceType, DynamicObject)> = Vec::new();
        for (resource, list) in fixed {
            out.extend(list.into_iter().map(|o| (resource.clone(), o)));
        }
        for crd in self.crds {
            out.push((types::crd(), crd.crd));
            if let Some(resource) = crd.resource {
                out.extend(crd.instances.into_iter().map(|o| (resource.clone(), o)));
            }
        }
        for release in self.helm.releases {
            out.extend(release.live.into_iter().map(|l| (l.resource, l.object)));
            out.extend(
                release
                    .records
                    .into_iter()
                    .map(|r| (crate::helm::record_type(&r), r)),
            );
        }
        for list in self.kept_objects {
            out.extend(list.objects.into_iter().map(|o| (list.resource.clone(), o)));
        }
        out
    }
}

/// The built-in types of the fixed inventory lists, at the versions the plan
/// addresses them with.
pub mod types {
    use crate::resource::ResourceType;

    fn rt(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
        }
    }

    /// v1 Namespace.
    pub fn namespace() -> ResourceType {
        rt("", "v1", "Namespace", "namespaces", false)
    }
    /// apiextensions.k8s.io/v1 CustomResourceDefinition.
    pub fn crd() -> ResourceType {
        rt(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
    }
    /// admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration.
    pub fn validating_webhook() -> ResourceType {
        rt(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        )
    }
    /// admissionregistration.k8s.io/v1 MutatingWebhookConfiguration.
    pub fn mutating_webhook() -> ResourceType {
        rt(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        )
    }
    /// apiregistration.k8s.io/v1 APIService.
    pub fn api_service() -> ResourceType {
        rt(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            false,
        )
    }
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    pub fn cluster_role() -> ResourceType {
        rt(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        )
    }
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    pub fn cluster_role_binding() -> ResourceType {
        rt(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        )
    }
    /// rbac.authorization.k8s.io/v1 Role.
    pub fn role() -> ResourceType {
        rt("rbac.authorization.k8s.io", "v1", "Role", "roles", true)
    }
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    pub fn role_binding() -> ResourceType {
        rt(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        )
    }
    /// certificates.k8s.io/v1 CertificateSigningRequest.
    pub fn csr() -> ResourceType {
        rt(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
        )
    }
    /// apps/v1 Deployment.
    pub fn deployment() -> ResourceType {
        rt("apps", "v1", "Deployment", "deployments", true)
    }
    /// v1 PersistentVolumeClaim.
    pub fn persistent_volume_claim() -> ResourceType {
        rt(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
    }
}

/// Reads a list of strings at a JSON pointer; missing or malformed gives empty.
pub(crate) fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    value
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `status` of the condition of `type_` in `status.conditions`.
pub(crate) fn condition_status<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a str> {
    object
        .data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))?
        .get("status")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({"metadata": {"name": uid, "uid": uid}}))
            .expect("object")
    }

    #[test]
    fn into_objects_yields_what_objects_lists_in_the_same_order() {
        let widgets = ResourceType {
            group: "example.io".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            namespaced: true,
        };
        let mut inventory = Inventory::default();
        inventory.namespaces.push(object("ns"));
        inventory.cluster_roles.push(object("cr"));
        inventory.controllers.push(object("deploy"));
        inventory.crds.push(CrdInventory {
            crd: object("crd"),
            resource: Some(widgets.clone()),
            instances: vec![object("w1"), object("w2")],
            instances_listed: true,
        });
        inventory.helm.releases.push(crate::helm::ObservedRelease {
            live: vec![crate::helm::LiveObject {
                resource: widgets.clone(),
                object: object("live"),
                chart_crd: false,
            }],
            ..Default::default()
        });
        inventory.kept_objects.push(ObservedList {
            resource: widgets,
            objects: vec![object("kept")],
        });
        let borrowed: Vec<(ResourceType, Option<String>)> = inventory
            .objects()
            .into_iter()
            .map(|(t, o)| (t, o.metadata.uid.clone()))
            .collect();
        let owned: Vec<(ResourceType, Option<String>)> = inventory
            .into_objects()
            .into_iter()
            .map(|(t, o)| (t, o.metadata.uid))
            .collect();
        assert_eq!(owned, borrowed);
        assert_eq!(owned.len(), 8);
    }
}
