//! The archive format: what `metadata.json` and `index.json` hold, where each
//! object lives inside the archive, and how an object is serialised. Pure
//! data, shared by the writer, the reader and restore.
//!
//! Layout of the (gzip-compressed) tar stream, in this order:
//! ```text
//! metadata.json                      cluster, kubesweep version, time, plan digest, sha256 of index.json
//! index.json                         one entry per object: identity, operations, sha256 of its file
//! resources/<group|core>/<version>/<kind>/<namespace|_cluster>/<name>.yaml
//! ```
//! The metadata names the index's checksum and the index names every file's,
//! so one flipped byte anywhere is caught, and a truncated stream misses
//! files the index lists (or fails gzip's own length and CRC check).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::inventory::ClusterIdentity;
use crate::resource::ResourceType;

/// Version of the archive layout; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;
/// Path of the metadata document inside the archive.
pub const METADATA_PATH: &str = "metadata.json";
/// Path of the index inside the archive.
pub const INDEX_PATH: &str = "index.json";
/// Directory holding one file per object.
pub const RESOURCES_DIR: &str = "resources";

/// `metadata.json`: what the archive is and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMetadata {
    /// Always [`FORMAT_VERSION`] for archives this version writes.
    pub format_version: u32,
    /// Version of kubesweep that wrote it.
    pub kubesweep_version: String,
    /// When it was written (RFC 3339, UTC).
    pub created_at: String,
    /// The cluster the objects were read from.
    pub cluster: ClusterIdentity,
    /// Profile of the plan.
    pub profile: String,
    /// [`crate::plan::Plan::digest`] of the plan the backup was taken for.
    pub plan_digest: String,
    /// Number of objects in the index.
    pub entries: usize,
    /// Hex sha256 of `index.json` as stored.
    pub index_sha256: String,
    /// Types that could not be read while collecting namespace content
    /// (`plural.group: why`); objects of these types are not in the archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// How restore treats an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// The plan deletes (or otherwise changes) it: restore creates it again.
    Recreate,
    /// The plan only removes platform metadata from it (a kept namespace or
    /// user object): restore puts back exactly the removed entries.
    PutBack,
}

/// Why an object is in the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The target of a plan action.
    PlanTarget,
    /// Content of a namespace the plan deletes (goes with the namespace).
    NamespaceContent,
}

/// The platform metadata the plan removes from a kept object, with the values
/// it had, so restore can put back exactly these entries and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemovedMetadata {
    /// Removed labels and their values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Removed annotations and their values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Removed `metadata.finalizers` values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Removed `metadata.ownerReferences` entries, whole.
    #[serde(rename = "ownerReferences", skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<Value>,
}

impl RemovedMetadata {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.annotations.is_empty()
            && self.finalizers.is_empty()
            && self.owner_references.is_empty()
    }
}

/// One object of `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Path of its file inside the archive.
    pub path: String,
    /// The type it was read as (restore addresses it with this).
    pub resource: ResourceType,
    /// `apiVersion`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// UID when it was read.
    pub uid: String,
    /// What the plan does to it (operation verbs, in plan order); for
    /// namespace content, the deletion of its namespace.
    pub operations: Vec<String>,
    /// Why it is in the backup.
    pub source: Source,
    /// How restore treats it.
    pub restore: RestoreMode,
    /// For [`RestoreMode::PutBack`]: what the plan removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<RemovedMetadata>,
    /// Whether it was already being deleted when read (it comes back live).
    #[serde(default)]
    pub terminating: bool,
    /// Hex sha256 of its file.
    pub sha256: String,
    /// Size of its file in bytes.
    pub size: u64,
}

impl IndexEntry {
    /// `kind namespace/name` for messages.
    pub fn display_name(&self) -> String {
        let kind = if self.resource.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.resource.group)
        };
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{}", self.name),
            None => format!("{kind} {}", self.name),
        }
    }
}

/// `index.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// One entry per object, in archive order.
    pub entries: Vec<IndexEntry>,
}

/// Where an object lives inside the archive:
/// `resources/<group or core>/<version>/<kind>/<namespace or _cluster>/<name>.yaml`.
///
/// Kubernetes names never contain `/`; any that would is replaced so one
/// object can never address another's file.
pub fn entry_path(resource: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    let group = if resource.group.is_empty() {
        "core"
    } else {
        resource.group.as_str()
    };
    let scope = namespace.unwrap_or("_cluster");
    format!(
        "{RESOURCES_DIR}/{}/{}/{}/{}/{}.yaml",
        segment(group),
        segment(&resource.version),
        segment(&resource.kind),
        segment(scope),
        segment(name)
    )
}

fn segment(s: &str) -> String {
    let cleaned = s.replace(['/', '\\', '\0'], "_");
    if cleaned == "." || cleaned == ".." || cleaned.is_empty() {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Serialises an object as YAML for its archive file.
pub fn to_yaml(object: &Value) -> Result<String, String> {
    serde_saphyr::to_string(object).map_err(|e| e.to_string())
}

/// Parses an archive file back into an object.
pub fn from_yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(group: &str, version: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            namespaced,
        }
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        assert_eq!(
            entry_path(
                &rt("", "v1", "Secret", true),
                Some("kubesphere-system"),
                "s1"
            ),
            "resources/core/v1/Secret/kubesphere-system/s1.yaml"
        );
        assert_eq!(
            entry_path(
                &rt("iam.kubesphere.io", "v1beta1", "GlobalRole", false),
                None,
                "platform-admin"
            ),
            "resources/iam.kubesphere.io/v1beta1/GlobalRole/_cluster/platform-admin.yaml"
        );
        assert_eq!(
            entry_path(
                &rt("rbac.authorization.k8s.io", "v1", "ClusterRole", false),
                None,
                "kubesphere:iam:x"
            ),
            "resources/rbac.authorization.k8s.io/v1/ClusterRole/_cluster/kubesphere:iam:x.yaml"
        );
    }

    #[test]
    fn hostile_names_cannot_escape_their_directory() {
        let p = entry_path(&rt("", "v1", "ConfigMap", true), Some(".."), "../../etc");
        assert_eq!(p, "resources/core/v1/ConfigMap/_../.._.._etc.yaml");
        assert!(!p.split('/').any(|s| s == ".."));
    }

    #[test]
    fn yaml_keeps_every_value_exactly() {
        // Values YAML 1.1 readers would turn into booleans, numbers or null.
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tricky", "labels": {"a": "yes", "b": "no", "c": "on", "d": "1", "e": "0x10", "f": "~", "g": "null", "h": "1e3", "i": "010"}},
            "data": {"multi": "line1\nline2\n", "empty": "", "unicode": "héllo ✓", "colon": "a: b", "dash": "- x", "hash": "# x", "quote": "'\"", "spaces": "  lead", "tab": "a\tb"},
            "spec": {"int": 9007199254740993_u64, "neg": -5, "float": 1.5, "bool": true, "null": null, "list": [], "map": {}, "nested": [[1, "2"], {"k": false}]}
        });
        let text = to_yaml(&object).expect("serialise");
        assert_eq!(from_yaml(&text).expect("parse"), object, "{text}");
    }

    #[test]
    fn index_entries_name_their_object() {
        let entry = IndexEntry {
            path: String::new(),
            resource: rt("iam.kubesphere.io", "v1beta1", "User", false),
            api_version: "iam.kubesphere.io/v1beta1".into(),
            kind: "User".into(),
            namespace: None,
            name: "admin".into(),
            uid: "u".into(),
            operations: vec!["delete".into()],
            source: Source::PlanTarget,
            restore: RestoreMode::Recreate,
            removed: None,
            terminating: true,
            sha256: String::new(),
            size: 0,
        };
        assert_eq!(entry.display_name(), "User.iam.kubesphere.io admin");
        let json = serde_json::to_value(&entry).expect("json");
        assert_eq!(json["restore"], "recreate");
        assert_eq!(json["source"], "plan-target");
        assert_eq!(json["apiVersion"], "iam.kubesphere.io/v1beta1");
    }
}
