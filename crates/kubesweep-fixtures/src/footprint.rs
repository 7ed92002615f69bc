//! The manifest of what a seed creates: every object with its address, its role in a cleanup test
//! (platform leftover, user data, foreign decoy, system namespace) and the finalizers it carries.
//!
//! Fixture objects carry no marker of their own: real KubeSphere objects have none, and the product
//! must not find them by one. Tests learn what was seeded from this manifest instead.

use std::collections::BTreeMap;
use std::fmt;

use kube::core::ApiResource;
use serde::{Deserialize, Serialize};

use crate::scale::Scale;

/// Address of one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `apiVersion` the fixture wrote it with, e.g. `iam.kubesphere.io/v1beta1` or `v1`.
    pub api_version: String,
    /// Kind, e.g. `GlobalRole`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind.group namespace/name`, or `Kind name` for core cluster-scoped objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if !self.group().is_empty() {
            write!(f, ".{}", self.group())?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

/// What a cleanup must do with an object, which is what tests assert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Left behind by KubeSphere: a complete cleanup removes it.
    Platform,
    /// User data (project namespaces and their workloads): must survive; only KubeSphere's
    /// labels, annotations, finalizers and owner references may be removed from it.
    User,
    /// Another vendor's object or a look-alike: must stay byte-identical.
    Foreign,
    /// `default`, `kube-system`, `kube-public`, `kube-node-lease` (pre-existing, patched by the seed):
    /// must survive with only KubeSphere's keys removed.
    SystemNamespace,
}

/// One seeded object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededObject {
    /// Its address.
    pub key: ObjectKey,
    /// Plural resource name, to address it through the API.
    pub plural: String,
    /// What a cleanup must do with it.
    pub role: Role,
    /// Finalizers the seed put on it (KubeSphere's and foreign ones).
    pub finalizers: Vec<String>,
    /// Whether the seed deleted it after creating it, so it stays Terminating on its finalizers.
    pub terminating: bool,
}

impl SeededObject {
    /// How to address the object with a dynamic API.
    pub fn api_resource(&self) -> ApiResource {
        let (group, version) = match self.key.api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), self.key.api_version.clone()),
        };
        ApiResource {
            group,
            version,
            api_version: self.key.api_version.clone(),
            kind: self.key.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// Everything one seed creates or patches, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Profile name, e.g. `kubesphere-v4`.
    pub profile: String,
    /// The scale it was generated with.
    pub scale: Scale,
    /// The objects.
    pub objects: Vec<SeededObject>,
}

impl Footprint {
    /// Objects with one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &SeededObject> {
        self.objects.iter().filter(move |o| o.role == role)
    }

    /// Objects of one kind (any group), e.g. `Namespace`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a SeededObject> {
        self.objects.iter().filter(move |o| o.key.kind == kind)
    }

    /// Looks an object up by kind, namespace and name.
    pub fn find(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&SeededObject> {
        self.objects.iter().find(|o| {
            o.key.kind == kind && o.key.namespace.as_deref() == namespace && o.key.name == name
        })
    }

    /// Names of the platform's CRDs.
    pub fn platform_crds(&self) -> Vec<&str> {
        self.names(Role::Platform, "CustomResourceDefinition")
    }

    /// Names of the foreign CRDs.
    pub fn foreign_crds(&self) -> Vec<&str> {
        self.names(Role::Foreign, "CustomResourceDefinition")
    }

    /// Namespaces a cleanup deletes (`kubesphere-system`, extension namespaces...).
    pub fn platform_namespaces(&self) -> Vec<&str> {
        self.names(Role::Platform, "Namespace")
    }

    /// User project namespaces (in a workspace) and user namespaces outside any workspace.
    pub fn user_namespaces(&self) -> Vec<&str> {
        let mut v = self.names(Role::User, "Namespace");
        v.extend(self.names(Role::Foreign, "Namespace"));
        v
    }

    /// The four system namespaces the seed patched.
    pub fn system_namespaces(&self) -> Vec<&str> {
        self.names(Role::SystemNamespace, "Namespace")
    }

    /// Foreign decoys.
    pub fn decoys(&self) -> impl Iterator<Item = &SeededObject> {
        self.with_role(Role::Foreign)
    }

    /// Objects the seed left Terminating.
    pub fn terminating(&self) -> impl Iterator<Item = &SeededObject> {
        self.objects.iter().filter(|o| o.terminating)
    }

    /// Object counts per role and kind (`Platform GlobalRole.iam.kubesphere.io` → 4).
    pub fn counts(&self) -> BTreeMap<(Role, String), usize> {
        let mut m = BTreeMap::new();
        for o in &self.objects {
            *m.entry((o.role, kind_label(&o.key))).or_insert(0) += 1;
        }
        m
    }

    fn names(&self, role: Role, kind: &str) -> Vec<&str> {
        self.with_role(role)
            .filter(|o| o.key.kind == kind)
            .map(|o| o.key.name.as_str())
            .collect()
    }
}

/// `Kind.group`, or `Kind` for the core group.
pub(crate) fn kind_label(key: &ObjectKey) -> String {
    if key.group().is_empty() {
        key.kind.clone()
    } else {
        format!("{}.{}", key.kind, key.group())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_with_group_and_namespace() {
        let k = ObjectKey {
            api_version: "iam.kubesphere.io/v1beta1".into(),
            kind: "RoleBinding".into(),
            namespace: Some("p1".into()),
            name: "admin".into(),
        };
        assert_eq!(k.to_string(), "RoleBinding.iam.kubesphere.io p1/admin");
        let ns = ObjectKey {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "a".into(),
        };
        assert_eq!(ns.to_string(), "Namespace a");
        assert_eq!(ns.group(), "");
    }
}
