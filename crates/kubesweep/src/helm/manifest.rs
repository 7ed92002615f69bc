//! A release's rendered manifest and its chart's `crds/` files, parsed into
//! the identities of the objects they create.
//!
//! The manifest is a multi-document YAML stream (`---` separated, each
//! document preceded by a `# Source:` comment). Documents are parsed one by
//! one so that a malformed document is a [`ManifestProblem`] and the rest of
//! the release is still usable.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One object a release created, as its manifest names it (no UID: discovery
/// reads the live object to bind the plan to it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace` when the manifest sets it (Helm installs objects
    /// without one into the release namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ManifestObject {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        crate::profile::api_version_group(&self.api_version)
    }

    /// How findings name it: `Kind namespace/name` or `Kind name`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A manifest document that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestProblem {
    /// 1-based index of the document in the stream.
    pub document: usize,
    /// The `# Source:` template path, when the document names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A CRD shipped in a chart's `crds/` folder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChartCrd {
    /// CRD name (`plural.group`).
    pub name: String,
    /// `spec.group`.
    pub group: String,
    /// The chart file it came from.
    pub file: String,
}

/// Splits a YAML stream into documents at `---` marker lines.
fn documents(stream: &str) -> Vec<&str> {
    documents_with_markers(stream)
        .into_iter()
        .map(|(_, doc)| doc)
        .collect()
}

/// Splits a YAML stream at `---` marker lines into `(marker line, document)`
/// pairs that concatenate back to the stream exactly (the first marker is
/// empty when the stream does not start with one).
pub(crate) fn documents_with_markers(stream: &str) -> Vec<(&str, &str)> {
    let mut parts = Vec::new();
    let mut marker = "";
    let mut start = 0;
    let mut offset = 0;
    for line in stream.split_inclusive('\n') {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.trim().is_empty() || rest.starts_with([' ', '\t']));
        if is_marker {
            parts.push((marker, &stream[start..offset]));
            marker = line;
            start = offset + line.len();
        }
        offset += line.len();
    }
    parts.push((marker, &stream[start..]));
    parts
}

pub(crate) fn source_comment(doc: &str) -> Option<String> {
    doc.lines()
        .find_map(|l| l.trim().strip_prefix("# Source:"))
        .map(|s| s.trim().to_owned())
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Parses one document into a YAML value; `Ok(None)` for an empty document.
pub(crate) fn parse_document(doc: &str) -> Result<Option<Value>, String> {
    if doc
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(None);
    }
    match serde_saphyr::from_str::<Value>(doc) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(err) => Err(format!("invalid YAML: {}", first_line(&err.to_string()))),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Parses a release manifest: every object it names, and every document that
/// is not a usable object (bad YAML, missing `apiVersion`/`kind`/`name`).
/// `List` documents are expanded into their items, as Helm does.
pub fn parse_manifest(manifest: &str) -> (Vec<ManifestObject>, Vec<ManifestProblem>) {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (index, doc) in documents(manifest).into_iter().enumerate() {
        let problem = |message: String| ManifestProblem {
            document: index + 1,
            source: source_comment(doc),
            message,
        };
        let value = match parse_document(doc) {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err(message) => {
                problems.push(problem(message));
                continue;
            }
        };
        let kind = str_at(&value, "/kind").unwrap_or_default();
        let items: Vec<&Value> = if kind.ends_with("List") && value.get("items").is_some() {
            value
                .get("items")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        } else {
            vec![&value]
        };
        for item in items {
            match object_identity(item) {
                Ok(object) => objects.push(object),
                Err(message) => problems.push(problem(message)),
            }
        }
    }
    (objects, problems)
}

fn object_identity(value: &Value) -> Result<ManifestObject, String> {
    if !value.is_object() {
        return Err("document is not a mapping".to_owned());
    }
    let api_version = str_at(value, "/apiVersion").ok_or("object has no apiVersion")?;
    let kind = str_at(value, "/kind").ok_or("object has no kind")?;
    let name =
        str_at(value, "/metadata/name").ok_or_else(|| format!("{kind} has no metadata.name"))?;
    Ok(ManifestObject {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: str_at(value, "/metadata/namespace").map(str::to_owned),
        name: name.to_owned(),
        labels: string_map(value.pointer("/metadata/labels")),
        annotations: string_map(value.pointer("/metadata/annotations")),
    })
}

/// The CRDs in a chart's `crds/` files (`(file name, content)` pairs).
pub fn chart_crds(files: &[(String, String)]) -> (Vec<ChartCrd>, Vec<ManifestProblem>) {
    let mut crds = Vec::new();
    let mut problems = Vec::new();
    for (file, content) in files {
        for (index, doc) in documents(content).into_iter().enumerate() {
            let problem = |message: String| ManifestProblem {
                document: index + 1,
                source: Some(file.clone()),
                message,
            };
            let value = match parse_document(doc) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                Err(message) => {
                    problems.push(problem(message));
                    continue;
                }
            };
            if str_at(&value, "/kind") != Some("CustomResourceDefinition") {
                problems.push(problem("not a CustomResourceDefinition".to_owned()));
                continue;
            }
            match (
                str_at(&value, "/metadata/name"),
                str_at(&value, "/spec/group"),
            ) {
                (Some(name), Some(group)) => crds.push(ChartCrd {
                    name: name.to_owned(),
                    group: group.to_owned(),
                    file: file.clone(),
                }),
                _ => problems.push(problem("CRD without metadata.name or spec.group".into())),
            }
        }
    }
    crds.sort();
    crds.dedup();
    (crds, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "---
# Source: ext/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  labels:
    kubesphere.io/extension-ref: ext
---
# Source: ext/templates/empty.yaml
---
# Source: ext/templates/crb.yaml
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ext-crb
  annotations:
    helm.sh/resource-policy: keep
---
# Source: ext/templates/bad.yaml
apiVersion: v1
kind: [unclosed
---
# Source: ext/templates/noname.yaml
apiVersion: v1
kind: Service
metadata: {}
---
apiVersion: v1
kind: ConfigMapList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed, namespace: other}
";

    #[test]
    fn objects_and_problems_per_document() {
        let (objects, problems) = parse_manifest(MANIFEST);
        let names: Vec<_> = objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["cfg", "ext-crb", "listed"]);
        assert_eq!(objects[0].labels["kubesphere.io/extension-ref"], "ext");
        assert_eq!(objects[1].group(), "rbac.authorization.k8s.io");
        assert_eq!(objects[2].namespace.as_deref(), Some("other"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0].source.as_deref(),
            Some("ext/templates/bad.yaml")
        );
        assert!(problems[0].message.starts_with("invalid YAML"));
        assert_eq!(problems[1].message, "Service has no metadata.name");
    }

    #[test]
    fn crds_from_chart_files() {
        let files = vec![
            (
                "crds/a.yaml".to_owned(),
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.ext.kubesphere.io\nspec:\n  group: ext.kubesphere.io\n".to_owned(),
            ),
            ("crds/b.yaml".to_owned(), "kind: ConfigMap\n".to_owned()),
        ];
        let (crds, problems) = chart_crds(&files);
        assert_eq!(crds.len(), 1);
        assert_eq!(crds[0].group, "ext.kubesphere.io");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn document_markers_only_at_line_start() {
        assert_eq!(documents("a: 1\n---\nb: '---'\n--- \nc: 3").len(), 3);
    }
}
