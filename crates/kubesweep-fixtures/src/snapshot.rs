//! Snapshots of everything a cleanup must not damage (foreign decoys, system namespaces, user
//! namespaces and their objects) in a canonical, comparable form, a diff that names each change,
//! and the read side of `summary` (what of a footprint is found in the cluster).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::footprint::{Footprint, ObjectKey, Role, SeededObject, kind_label};

/// The state of the protected objects of a footprint, keyed by `Kind.group namespace/name`.
/// `None` means the object does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Canonical JSON of each object (sorted keys; identity, metadata, and everything but status).
    pub objects: BTreeMap<String, Option<Value>>,
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The object, as `Kind.group namespace/name`.
    pub object: String,
    /// Dotted path of the field that changed; empty when the whole object appeared or vanished.
    pub path: String,
    /// The value before (`None`: absent).
    pub before: Option<Value>,
    /// The value after (`None`: absent).
    pub after: Option<Value>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| {
            v.as_ref()
                .map_or_else(|| "(absent)".to_string(), Value::to_string)
        };
        if self.path.is_empty() {
            match (&self.before, &self.after) {
                (Some(_), None) => write!(f, "{}: deleted", self.object),
                (None, Some(_)) => write!(f, "{}: created", self.object),
                _ => write!(f, "{}: replaced", self.object),
            }
        } else {
            write!(
                f,
                "{}: {}: {} -> {}",
                self.object,
                self.path,
                show(&self.before),
                show(&self.after)
            )
        }
    }
}

impl Snapshot {
    /// Every difference from `self` (before) to `after`, in key order.
    pub fn changes(&self, after: &Snapshot) -> Vec<Change> {
        let mut out = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.objects.keys().chain(after.objects.keys()).collect();
        for key in keys {
            let before = self.objects.get(key).cloned().flatten();
            let now = after.objects.get(key).cloned().flatten();
            match (&before, &now) {
                (Some(b), Some(a)) => diff_values(key, "", b, a, &mut out),
                (None, None) => {}
                _ => out.push(Change {
                    object: key.clone(),
                    path: String::new(),
                    before,
                    after: now,
                }),
            }
        }
        out
    }

    /// [`Snapshot::changes`], one line each: `ConfigMap acme-apps/settings: metadata.labels.x: "a" -> (absent)`.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        self.changes(after).iter().map(Change::to_string).collect()
    }

    /// The canonical state of one object, by its `Kind.group namespace/name`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(&key.to_string()).and_then(Option::as_ref)
    }

    /// Pretty, stable JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(Error::Encode)
    }
}

fn diff_values(object: &str, path: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    if before == after {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let (Value::Object(b), Value::Object(a)) = (before, after) {
        let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        for k in keys {
            match (b.get(k), a.get(k)) {
                (Some(x), Some(y)) => diff_values(object, &join(k), x, y, out),
                (x, y) => out.push(Change {
                    object: object.into(),
                    path: join(k),
                    before: x.cloned(),
                    after: y.cloned(),
                }),
            }
        }
        return;
    }
    out.push(Change {
        object: object.into(),
        path: path.into(),
        before: Some(before.clone()),
        after: Some(after.clone()),
    });
}

/// Metadata fields that identify and describe an object; the rest (managedFields, selfLink...) is
/// bookkeeping a cleanup cannot be blamed for.
const META_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
];

/// The comparable form of an object: apiVersion, kind, the identifying metadata, every top-level
/// field except `status` (controllers own it), and a Namespace's phase.
pub fn canonical(obj: &Value) -> Value {
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    for (k, v) in map {
        match k.as_str() {
            "metadata" => {
                let meta: Map<String, Value> = META_FIELDS
                    .iter()
                    .filter_map(|f| v.get(*f).map(|x| (f.to_string(), x.clone())))
                    .collect();
                out.insert(k.clone(), Value::Object(meta));
            }
            "status" => {
                if map.get("kind").and_then(Value::as_str) == Some("Namespace")
                    && let Some(phase) = v.get("phase")
                {
                    out.insert("status".into(), serde_json::json!({"phase": phase}));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Reads the objects of a footprint from the cluster, one paged LIST per resource type: a GET per
/// object would cost thousands of round trips on a large footprint. A resource type that no longer
/// exists (its CRD is gone) yields no objects.
pub(crate) async fn fetch<'a>(
    client: &Client,
    objects: impl Iterator<Item = &'a SeededObject>,
) -> Result<HashMap<ObjectKey, Value>> {
    let mut by_type: BTreeMap<(String, String), (ApiResource, Vec<&SeededObject>)> =
        BTreeMap::new();
    for o in objects {
        let ar = o.api_resource();
        by_type
            .entry((ar.api_version.clone(), ar.plural.clone()))
            .or_insert_with(|| (ar, Vec::new()))
            .1
            .push(o);
    }
    let lists = stream::iter(by_type.into_values().map(|(ar, wanted)| async move {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let wanted: std::collections::HashSet<&ObjectKey> = wanted.iter().map(|o| &o.key).collect();
        let mut found = Vec::new();
        let mut params = ListParams::default().limit(500);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(source) => {
                    return Err(Error::Api {
                        action: "list",
                        object: format!("{}.{}", ar.plural, ar.group),
                        source,
                    });
                }
            };
            for item in page.items {
                let key = ObjectKey {
                    api_version: ar.api_version.clone(),
                    kind: ar.kind.clone(),
                    namespace: item.metadata.namespace.clone(),
                    name: item.metadata.name.clone().unwrap_or_default(),
                };
                if wanted.contains(&key) {
                    let mut value = serde_json::to_value(&item).map_err(Error::Encode)?;
                    // Lists leave out each item's apiVersion and kind.
                    value["apiVersion"] = ar.api_version.clone().into();
                    value["kind"] = ar.kind.clone().into();
                    found.push((key, value));
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => params = params.continue_token(&c),
                None => break,
            }
        }
        Ok(found)
    }))
    .buffer_unordered(8)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(lists.into_iter().flatten().collect())
}

/// Snapshots every object of the footprint that a cleanup must keep: foreign decoys, the system
/// namespaces, user namespaces and the user objects in them.
pub async fn snapshot(client: &Client, footprint: &Footprint) -> Result<Snapshot> {
    let protected = footprint
        .objects
        .iter()
        .filter(|o| o.role != Role::Platform);
    let found = fetch(client, protected.clone()).await?;
    let objects = protected
        .map(|o| (o.key.to_string(), found.get(&o.key).map(canonical)))
        .collect();
    Ok(Snapshot { objects })
}

/// How much of a footprint is in the cluster, per role and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// One row per role and kind.
    pub rows: Vec<SummaryRow>,
}

/// One line of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Role of the objects.
    pub role: Role,
    /// `Kind.group`.
    pub kind: String,
    /// How many the footprint holds.
    pub expected: usize,
    /// How many exist.
    pub found: usize,
    /// How many of those have a deletionTimestamp.
    pub terminating: usize,
}

impl Summary {
    /// Total objects expected and found.
    pub fn totals(&self) -> (usize, usize) {
        self.rows
            .iter()
            .fold((0, 0), |(e, f), r| (e + r.expected, f + r.found))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<52} {:>8} {:>8} {:>11}",
            "ROLE", "KIND", "EXPECTED", "FOUND", "TERMINATING"
        )?;
        for r in &self.rows {
            let role = format!("{:?}", r.role);
            writeln!(
                f,
                "{role:<16} {:<52} {:>8} {:>8} {:>11}",
                r.kind, r.expected, r.found, r.terminating
            )?;
        }
        let (e, found) = self.totals();
        write!(f, "{:<16} {:<52} {e:>8} {found:>8}", "TOTAL", "")
    }
}

/// Counts the footprint's objects found in the cluster.
pub async fn summary(client: &Client, footprint: &Footprint) -> Result<Summary> {
    let found = fetch(client, footprint.objects.iter()).await?;
    let mut rows: BTreeMap<(Role, String), SummaryRow> = BTreeMap::new();
    for o in &footprint.objects {
        let kind = kind_label(&o.key);
        let row = rows.entry((o.role, kind.clone())).or_insert(SummaryRow {
            role: o.role,
            kind,
            expected: 0,
            found: 0,
            terminating: 0,
        });
        row.expected += 1;
        if let Some(v) = found.get(&o.key) {
            row.found += 1;
            if !v["metadata"]["deletionTimestamp"].is_null() {
                row.terminating += 1;
            }
        }
    }
    Ok(Summary {
        rows: rows.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(v: Option<Value>) -> Snapshot {
        Snapshot {
            objects: [("ConfigMap a/b".to_string(), v)].into_iter().collect(),
        }
    }

    #[test]
    fn canonical_drops_status_and_bookkeeping_but_keeps_identity() {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n", "uid": "u", "resourceVersion": "7", "managedFields": [{}], "finalizers": ["x/y"]},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active", "conditions": []}});
        let c = canonical(&obj);
        assert_eq!(
            c["metadata"],
            json!({"name": "n", "uid": "u", "resourceVersion": "7", "finalizers": ["x/y"]})
        );
        assert_eq!(c["status"], json!({"phase": "Active"}));
        assert_eq!(c["spec"], obj["spec"]);
        let dep = canonical(&json!({"kind": "Deployment", "status": {"replicas": 0}}));
        assert!(dep.get("status").is_none());
    }

    #[test]
    fn diff_names_each_changed_field() {
        let before = snap(Some(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["f"]}}),
        ));
        let after = snap(Some(
            json!({"metadata": {"labels": {"a": "1", "c": "3"}, "finalizers": []}}),
        ));
        assert_eq!(
            before.diff(&after),
            [
                "ConfigMap a/b: metadata.finalizers: [\"f\"] -> []",
                "ConfigMap a/b: metadata.labels.b: \"2\" -> (absent)",
                "ConfigMap a/b: metadata.labels.c: (absent) -> \"3\"",
            ]
        );
        assert!(before.diff(&before.clone()).is_empty());
        assert_eq!(before.diff(&snap(None)), ["ConfigMap a/b: deleted"]);
        assert_eq!(snap(None).diff(&before), ["ConfigMap a/b: created"]);
    }
}
