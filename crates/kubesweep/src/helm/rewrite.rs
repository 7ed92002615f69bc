//! Rewriting a kept release's record so that its manifest no longer names
//! kinds that are being removed (what `helm mapkubeapis` does for
//! KubeSphere's own hook): without that, `helm upgrade`, `rollback` and
//! `uninstall` of the release fail on the first document whose kind the
//! server no longer serves.
//!
//! Only the `manifest` field changes, and only by dropping whole documents:
//! every other field of the release JSON is carried over byte for byte (read
//! as raw JSON), the kept documents keep their text, and the record is
//! encoded the way Helm writes it (gzip, then base64). Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::manifest::{documents_with_markers, parse_document, parse_manifest, source_comment};
use super::record::{HelmError, decode_release_bytes};

/// An API group and kind, as a manifest document names them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    /// API group; empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// The kinds a manifest names (items of `List` documents included).
pub fn manifest_kinds(manifest: &str) -> BTreeSet<GroupKind> {
    let (objects, _) = parse_manifest(manifest);
    objects
        .iter()
        .map(|o| GroupKind {
            group: o.group().to_owned(),
            kind: o.kind.clone(),
        })
        .collect()
}

/// The manifest without the documents whose object is of a kind in
/// `remove`, and the `Kind name` of each dropped object. A `List` document
/// that mixes removed and kept kinds is written again without the removed
/// items (as JSON, which is YAML; the only document not kept verbatim).
pub fn strip_kinds(manifest: &str, remove: &BTreeSet<GroupKind>) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(manifest.len());
    let mut dropped = Vec::new();
    for (marker, doc) in documents_with_markers(manifest) {
        let (objects, _) = parse_manifest(doc);
        let removed: Vec<String> = objects
            .iter()
            .filter(|o| {
                remove.contains(&GroupKind {
                    group: o.group().to_owned(),
                    kind: o.kind.clone(),
                })
            })
            .map(|o| o.describe())
            .collect();
        if removed.is_empty() {
            kept.push_str(marker);
            kept.push_str(doc);
        } else if removed.len() == objects.len() {
            dropped.extend(removed);
        } else if let Some(list) = list_without(doc, remove) {
            kept.push_str(marker);
            if let Some(source) = source_comment(doc) {
                kept.push_str(&format!("# Source: {source}\n"));
            }
            kept.push_str(&list);
            kept.push('\n');
            dropped.extend(removed);
        } else {
            // Not a List after all: nothing safe to cut out of it.
            kept.push_str(marker);
            kept.push_str(doc);
        }
    }
    (kept, dropped)
}

/// A `List` document without its items of removed kinds, as JSON.
fn list_without(doc: &str, remove: &BTreeSet<GroupKind>) -> Option<String> {
    let mut value = parse_document(doc).ok()??;
    let items = value.get_mut("items")?.as_array_mut()?;
    items.retain(|item| {
        let api_version = item
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let kind = item
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        !remove.contains(&GroupKind {
            group: crate::profile::api_version_group(api_version).to_owned(),
            kind: kind.to_owned(),
        })
    });
    serde_json::to_string(&value).ok()
}

/// A release record value rewritten: the new value of the record's `release`
/// key in Helm's own encoding, and the objects dropped from its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrittenRelease {
    /// base64(gzip(JSON)), as Helm writes it.
    pub value: String,
    /// `Kind name` of every dropped object.
    pub dropped: Vec<String>,
}

/// Rewrites Helm's encoding of a release (the value of key `release` once
/// any API-level base64 is removed) so its manifest names no kind in
/// `remove`. `Ok(None)` when the manifest names none: nothing to write.
pub fn rewrite_release(
    value: &[u8],
    remove: &BTreeSet<GroupKind>,
) -> Result<Option<RewrittenRelease>, HelmError> {
    let json = decode_release_bytes(value)?;
    // Raw values: every field but the manifest is written back unchanged.
    let mut release: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(&json).map_err(HelmError::Json)?;
    let manifest: String = match release.get("manifest") {
        Some(raw) => serde_json::from_str(raw.get()).map_err(HelmError::Json)?,
        None => return Ok(None),
    };
    let (stripped, dropped) = strip_kinds(&manifest, remove);
    if dropped.is_empty() {
        return Ok(None);
    }
    let raw = serde_json::value::to_raw_value(&stripped).map_err(HelmError::Json)?;
    release.insert("manifest".to_owned(), raw);
    let json = serde_json::to_vec(&release).map_err(HelmError::Json)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).map_err(HelmError::Gzip)?;
    let compressed = gz.finish().map_err(HelmError::Gzip)?;
    Ok(Some(RewrittenRelease {
        value: base64::engine::general_purpose::STANDARD.encode(compressed),
        dropped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::decode_release;

    const MANIFEST: &str = "---
# Source: ext/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
---
# Source: ext/templates/ui.yaml
apiVersion: extensions.kubesphere.io/v1alpha1
kind: JSBundle
metadata:
  name: demo-ui
---
# Source: ext/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-config
data:
  a: \"---\"
";

    fn jsbundle() -> BTreeSet<GroupKind> {
        [GroupKind {
            group: "extensions.kubesphere.io".into(),
            kind: "JSBundle".into(),
        }]
        .into()
    }

    fn encode(json: &str) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.as_bytes()).expect("gzip");
        base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
    }

    #[test]
    fn strips_only_documents_of_removed_kinds_keeping_the_rest_verbatim() {
        let (kept, dropped) = strip_kinds(MANIFEST, &jsbundle());
        assert_eq!(dropped, vec!["JSBundle demo-ui"]);
        let expected = MANIFEST.replace(
            "---
# Source: ext/templates/ui.yaml
apiVersion: extensions.kubesphere.io/v1alpha1
kind: JSBundle
metadata:
  name: demo-ui
",
            "",
        );
        assert_eq!(kept, expected);
        assert_eq!(manifest_kinds(&kept).len(), 2);
        let (same, none) = strip_kinds(MANIFEST, &BTreeSet::new());
        assert_eq!(same, MANIFEST);
        assert!(none.is_empty());
    }

    #[test]
    fn a_list_loses_only_its_items_of_removed_kinds() {
        let list = "---\n# Source: ext/templates/list.yaml\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: extensions.kubesphere.io/v1alpha1, kind: JSBundle, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let (kept, dropped) = strip_kinds(list, &jsbundle());
        assert_eq!(dropped, vec!["JSBundle a"]);
        assert!(
            kept.starts_with("---\n# Source: ext/templates/list.yaml\n"),
            "{kept}"
        );
        let kinds: Vec<String> = manifest_kinds(&kept)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(kinds, ["ConfigMap"]);
        // Idempotent: nothing more to drop.
        let (again, none) = strip_kinds(&kept, &jsbundle());
        assert_eq!(again, kept);
        assert!(none.is_empty());
    }

    #[test]
    fn rewrite_changes_only_the_manifest() {
        let release = serde_json::json!({
            "name": "demo", "namespace": "extension-demo", "version": 3,
            "info": {"status": "deployed", "notes": "big number 12345678901234567890123"},
            "config": {"ratio": 1.50, "huge": 12345678901234567890123u128.to_string()},
            "chart": {"metadata": {"name": "demo", "version": "1.0.0"}},
            "manifest": MANIFEST,
        });
        // Raw text with a number serde_json cannot hold exactly: it must survive.
        let text = serde_json::to_string(&release).expect("json").replace(
            "\"ratio\":1.5",
            "\"ratio\":1.50,\"exact\":12345678901234567890123",
        );
        let rewritten = rewrite_release(encode(&text).as_bytes(), &jsbundle())
            .expect("rewrite")
            .expect("something to drop");
        assert_eq!(rewritten.dropped, vec!["JSBundle demo-ui"]);
        let decoded = decode_release(rewritten.value.as_bytes()).expect("decodes as helm would");
        assert_eq!(decoded.version, 3);
        assert_eq!(decoded.status, "deployed");
        assert!(!decoded.manifest.contains("JSBundle"));
        assert!(decoded.manifest.contains("kind: ConfigMap"));
        let json =
            String::from_utf8(decode_release_bytes(rewritten.value.as_bytes()).expect("bytes"))
                .expect("utf8");
        assert!(
            json.contains("\"ratio\":1.50,\"exact\":12345678901234567890123"),
            "{json}"
        );

        // Nothing to drop: nothing to write (the rewrite is idempotent).
        let again = rewrite_release(rewritten.value.as_bytes(), &jsbundle()).expect("rewrite");
        assert_eq!(again, None);
    }

    #[test]
    fn corrupt_values_are_errors() {
        assert!(rewrite_release(b"%%%", &jsbundle()).is_err());
        assert!(rewrite_release(encode("[1]").as_bytes(), &jsbundle()).is_err());
    }
}
