//! Names of API types and of concrete objects, shared by discovery, planning and
//! execution. Pure data: no I/O, serialisable, so plans can name what they touch.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One served API resource type, as discovery reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version used to talk to the server (the preferred or storage version).
    pub version: String,
    /// Kind, e.g. `Workspace`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `workspaces`.
    pub plural: String,
    /// Whether objects of this type live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group): how kubectl and CRD names spell a resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The `kube` dynamic-API descriptor for this type.
    pub fn api_resource(&self) -> kube::api::ApiResource {
        kube::api::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified_plural())
    }
}

/// One concrete object as it was observed: enough to address it again and to
/// refuse acting on anything else (a re-created object has another UID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's type.
    pub resource: ResourceType,
    /// Namespace, for namespaced types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// UID seen at discovery; every destructive call is bound to it.
    pub uid: String,
    /// resourceVersion seen at discovery; metadata patches test it.
    pub resource_version: String,
}

impl ObjectRef {
    /// Builds a reference from an observed dynamic object; `None` when the
    /// server did not report a UID or resourceVersion (never happens for stored objects).
    pub fn from_object(resource: &ResourceType, object: &kube::api::DynamicObject) -> Option<Self> {
        Some(Self {
            resource: resource.clone(),
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone()?,
            uid: object.metadata.uid.clone()?,
            resource_version: object.metadata.resource_version.clone()?,
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{}/{}/{}",
                self.resource.qualified_plural(),
                ns,
                self.name
            ),
            None => write!(f, "{}/{}", self.resource.qualified_plural(), self.name),
        }
    }
}
