//! How a verified archive is restored, decided without a cluster: the order
//! (CRDs, then objects in waves so namespaces and owners exist before what
//! lives in or depends on them, then the metadata put back on kept objects,
//! then APIServices, then webhook configurations last, because a platform
//! webhook whose service is gone would reject everything restored after it),
//! the clean-up of server-set fields before a create, and the JSON patch that
//! puts removed metadata back onto a live object.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::archive::Archive;
use super::format::{RemovedMetadata, RestoreMode};

/// Stages of a restore, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// CustomResourceDefinitions; the restore waits until they are Established.
    Crds,
    /// Every other re-created object, in dependency waves.
    Objects,
    /// Removed metadata put back onto kept objects (their owners exist again).
    PutBack,
    /// Aggregated APIServices (one without its backend breaks discovery).
    ApiServices,
    /// Webhook configurations, last: one whose service is gone rejects the
    /// requests it matches, so nothing may be restored after it.
    Webhooks,
}

impl Stage {
    /// Title for progress and reports.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Crds => "CRDs",
            Stage::Objects => "objects",
            Stage::PutBack => "metadata put back on kept objects",
            Stage::ApiServices => "APIServices",
            Stage::Webhooks => "webhook configurations",
        }
    }
}

/// Objects (indices into [`Archive::objects`]) that may be restored together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// The stage.
    pub stage: Stage,
    /// Indices of the objects, in a stable order.
    pub objects: Vec<usize>,
}

fn stage_of(group: &str, kind: &str, mode: RestoreMode) -> Stage {
    match (mode, group, kind) {
        (RestoreMode::PutBack, _, _) => Stage::PutBack,
        (_, "apiextensions.k8s.io", "CustomResourceDefinition") => Stage::Crds,
        (_, "apiregistration.k8s.io", "APIService") => Stage::ApiServices,
        (
            _,
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => Stage::Webhooks,
        _ => Stage::Objects,
    }
}

/// The restore order of an archive, as waves.
pub fn waves(archive: &Archive) -> Vec<Wave> {
    let objects = &archive.objects;
    let stages: Vec<Stage> = objects
        .iter()
        .map(|o| stage_of(&o.entry.resource.group, &o.entry.kind, o.entry.restore))
        .collect();
    // Dependencies among the objects of the Objects stage: owners (by the
    // UID they had) and the namespace an object lives in.
    let by_uid: HashMap<&str, usize> = objects
        .iter()
        .enumerate()
        .filter(|(i, _)| stages[*i] == Stage::Objects)
        .map(|(i, o)| (o.entry.uid.as_str(), i))
        .collect();
    let namespaces: HashMap<&str, usize> = objects
        .iter()
        .enumerate()
        .filter(|(i, o)| {
            stages[*i] == Stage::Objects
                && o.entry.resource.group.is_empty()
                && o.entry.kind == "Namespace"
        })
        .map(|(i, o)| (o.entry.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = objects
        .iter()
        .map(|o| {
            let mut d: Vec<usize> = owner_references(&o.object)
                .iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .filter_map(|uid| by_uid.get(uid).copied())
                .collect();
            if let Some(ns) = o.entry.namespace.as_deref()
                && let Some(&i) = namespaces.get(ns)
            {
                d.push(i);
            }
            d
        })
        .collect();
    let mut depth: Vec<Option<usize>> = vec![None; objects.len()];
    for i in 0..objects.len() {
        depth_of(i, &deps, &mut depth, &mut HashSet::new());
    }

    let mut grouped: BTreeMap<(Stage, usize), Vec<usize>> = BTreeMap::new();
    for (i, stage) in stages.iter().enumerate() {
        let d = if *stage == Stage::Objects {
            depth[i].unwrap_or(0)
        } else {
            0
        };
        grouped.entry((*stage, d)).or_default().push(i);
    }
    grouped
        .into_iter()
        .map(|((stage, _), mut members)| {
            members.sort_by_key(|&i| {
                let e = &objects[i].entry;
                (
                    tier(e.namespace.is_some(), &e.kind),
                    e.resource.group.clone(),
                    e.kind.clone(),
                    e.namespace.clone(),
                    e.name.clone(),
                )
            });
            Wave {
                stage,
                objects: members,
            }
        })
        .collect()
}

fn tier(namespaced: bool, kind: &str) -> u8 {
    match (kind, namespaced) {
        ("Namespace", false) => 0,
        (_, false) => 1,
        (_, true) => 2,
    }
}

fn depth_of(
    i: usize,
    deps: &[Vec<usize>],
    depth: &mut [Option<usize>],
    visiting: &mut HashSet<usize>,
) -> usize {
    if let Some(d) = depth[i] {
        return d;
    }
    // An ownership cycle cannot be created in order anyway; break it.
    if !visiting.insert(i) {
        return 0;
    }
    let d = deps[i]
        .iter()
        .map(|&j| depth_of(j, deps, depth, visiting) + 1)
        .max()
        .unwrap_or(0);
    visiting.remove(&i);
    depth[i] = Some(d);
    d
}

/// `metadata.ownerReferences` of an object.
pub fn owner_references(object: &Value) -> Vec<Value> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Fields the API server sets; a create carrying them is refused or misleading.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

/// Custom resource types (`group`, `kind`) whose CRD in the archive declares
/// no status subresource: for them `status` is ordinary data the server keeps.
pub fn kinds_with_plain_status(archive: &Archive) -> HashSet<(String, String)> {
    crd_kinds(archive, false)
}

/// Custom resource types (`group`, `kind`) whose CRD in the archive declares
/// a status subresource: the server drops `status` on create, so restore
/// writes it back through `/status` afterwards.
pub fn kinds_with_status_subresource(archive: &Archive) -> HashSet<(String, String)> {
    crd_kinds(archive, true)
}

fn crd_kinds(archive: &Archive, with_status_subresource: bool) -> HashSet<(String, String)> {
    archive
        .objects
        .iter()
        .filter(|o| {
            o.entry.resource.group == "apiextensions.k8s.io"
                && o.entry.kind == "CustomResourceDefinition"
        })
        .filter(|o| {
            let declared = o
                .object
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter()
                        .any(|v| v.pointer("/subresources/status").is_some())
                });
            declared == with_status_subresource
        })
        .filter_map(|o| {
            let group = o.object.pointer("/spec/group")?.as_str()?;
            let kind = o.object.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// The object as it can be created again: server-set metadata removed (so it
/// also comes back live, not terminating), `status` removed unless the server
/// keeps it, and a Service's allocated cluster IPs left to the server.
pub fn prepare_for_create(object: &Value, keep_status: bool) -> Value {
    let mut out = object.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_SET_METADATA {
            meta.remove(*field);
        }
    }
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    if !keep_status {
        map.remove("status");
    }
    let is_service = map.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && map.get("kind").and_then(Value::as_str) == Some("Service");
    if is_service && let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if !headless {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    let is_job = map.get("apiVersion").and_then(Value::as_str) == Some("batch/v1")
        && map.get("kind").and_then(Value::as_str) == Some("Job");
    if is_job && let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
        // The server generates a Job's selector and pod labels from the Job's
        // UID and refuses a create that carries the old ones.
        let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
        if !manual {
            spec.remove("selector");
            if let Some(labels) = spec
                .get_mut("template")
                .and_then(|t| t.get_mut("metadata"))
                .and_then(|m| m.get_mut("labels"))
                .and_then(Value::as_object_mut)
            {
                for key in JOB_GENERATED_LABELS {
                    labels.remove(*key);
                }
            }
        }
    }
    out
}

/// Pod-template labels the Job controller derives from the Job's UID.
const JOB_GENERATED_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];

/// Rewrites owner references whose owner was re-created (found by the old
/// UID in `new_uids`) or exists (`resolve` finds it by kind and name), and
/// drops the others (the garbage collector would delete an object whose owner
/// does not exist). Returns the dropped references.
pub fn remap_owner_references(
    object: &mut Value,
    new_uids: &HashMap<String, String>,
    resolve: impl Fn(&Value) -> Option<String>,
) -> Vec<Value> {
    let Some(refs) = object
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for mut r in refs.drain(..) {
        let old = r.get("uid").and_then(Value::as_str).unwrap_or_default();
        let new = new_uids.get(old).cloned().or_else(|| resolve(&r));
        match new {
            Some(uid) => {
                r["uid"] = Value::String(uid);
                kept.push(r);
            }
            None => dropped.push(r),
        }
    }
    *refs = kept;
    if refs.is_empty()
        && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.remove("ownerReferences");
    }
    dropped
}

/// The JSON patch that puts `removed` back onto `live`, or `None` when all of
/// it is already there. `owner_references` are the removed references with
/// their UIDs already remapped. Entries the live object has with another value
/// are left as they are (someone set them since) and named in the second value.
pub fn put_back_patch(
    live: &Value,
    removed: &RemovedMetadata,
    owner_references: &[Value],
) -> (Option<Vec<Value>>, Vec<String>) {
    let mut ops = Vec::new();
    let mut conflicts = Vec::new();
    for (field, wanted) in [
        ("labels", &removed.labels),
        ("annotations", &removed.annotations),
    ] {
        if wanted.is_empty() {
            continue;
        }
        let current = live.pointer(&format!("/metadata/{field}"));
        let mut missing = serde_json::Map::new();
        for (k, v) in wanted {
            match current.and_then(|m| m.get(k)).and_then(Value::as_str) {
                Some(now) if now == v => {}
                Some(_) => conflicts.push(format!("{field} {k}")),
                None => {
                    missing.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        if missing.is_empty() {
            continue;
        }
        if current.is_none_or(Value::is_null) {
            ops.push(json!({"op": "add", "path": format!("/metadata/{field}"), "value": missing}));
        } else {
            for (k, v) in missing {
                ops.push(json!({"op": "add", "path": format!("/metadata/{field}/{}", escape(&k)), "value": v}));
            }
        }
    }
    append_list(
        live,
        "finalizers",
        removed
            .finalizers
            .iter()
            .map(|f| Value::String(f.clone()))
            .collect(),
        |a, b| a == b,
        &mut ops,
    );
    append_list(
        live,
        "ownerReferences",
        owner_references.to_vec(),
        |a, b| a.get("uid") == b.get("uid"),
        &mut ops,
    );
    if ops.is_empty() {
        return (None, conflicts);
    }
    let mut guarded = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": live.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": live.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)}),
    ];
    guarded.extend(ops);
    (Some(guarded), conflicts)
}

fn append_list(
    live: &Value,
    field: &str,
    wanted: Vec<Value>,
    same: impl Fn(&Value, &Value) -> bool,
    ops: &mut Vec<Value>,
) {
    let current = live
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_array);
    let missing: Vec<Value> = wanted
        .into_iter()
        .filter(|w| !current.is_some_and(|c| c.iter().any(|x| same(x, w))))
        .collect();
    if missing.is_empty() {
        return;
    }
    match current {
        None => {
            ops.push(json!({"op": "add", "path": format!("/metadata/{field}"), "value": missing}))
        }
        Some(_) => {
            for m in missing {
                ops.push(json!({"op": "add", "path": format!("/metadata/{field}/-"), "value": m}));
            }
        }
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::archive::StoredObject;
    use crate::backup::format::{BackupMetadata, IndexEntry, Source};
    use crate::resource::ResourceType;

    fn stored(
        group: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        uid: &str,
        object: Value,
        mode: RestoreMode,
    ) -> StoredObject {
        let resource = ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            namespaced: ns.is_some(),
        };
        StoredObject {
            entry: IndexEntry {
                path: String::new(),
                api_version: resource.api_version(),
                resource,
                kind: kind.into(),
                namespace: ns.map(str::to_owned),
                name: name.into(),
                uid: uid.into(),
                operations: vec![],
                source: Source::PlanTarget,
                restore: mode,
                removed: None,
                terminating: false,
                sha256: String::new(),
                size: 0,
            },
            object,
        }
    }

    fn archive(objects: Vec<StoredObject>) -> Archive {
        Archive {
            metadata: BackupMetadata {
                format_version: 1,
                kubesweep_version: String::new(),
                created_at: String::new(),
                cluster: Default::default(),
                profile: String::new(),
                plan_digest: String::new(),
                entries: objects.len(),
                index_sha256: String::new(),
                incomplete: vec![],
            },
            objects,
        }
    }

    fn names(a: &Archive, waves: &[Wave]) -> Vec<(Stage, Vec<String>)> {
        waves
            .iter()
            .map(|w| {
                (
                    w.stage,
                    w.objects
                        .iter()
                        .map(|&i| a.objects[i].entry.name.clone())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn crds_come_first_webhooks_last_and_owners_before_dependents() {
        let owned =
            |owner_uid: &str| json!({"metadata": {"ownerReferences": [{"uid": owner_uid}]}});
        let a = archive(vec![
            stored(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                None,
                "hook",
                "h",
                json!({}),
                RestoreMode::Recreate,
            ),
            stored(
                "iam.kubesphere.io",
                "RoleBinding",
                Some("ks"),
                "binding",
                "b",
                owned("r"),
                RestoreMode::Recreate,
            ),
            stored(
                "iam.kubesphere.io",
                "Role",
                Some("ks"),
                "role",
                "r",
                owned("ws"),
                RestoreMode::Recreate,
            ),
            stored(
                "tenant.kubesphere.io",
                "Workspace",
                None,
                "ws",
                "ws",
                json!({}),
                RestoreMode::Recreate,
            ),
            stored(
                "",
                "Namespace",
                None,
                "ks",
                "ns",
                json!({}),
                RestoreMode::Recreate,
            ),
            stored(
                "",
                "Namespace",
                None,
                "default",
                "d",
                json!({}),
                RestoreMode::PutBack,
            ),
            stored(
                "apiregistration.k8s.io",
                "APIService",
                None,
                "v1.x",
                "api",
                json!({}),
                RestoreMode::Recreate,
            ),
            stored(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "roles.iam.kubesphere.io",
                "crd",
                json!({}),
                RestoreMode::Recreate,
            ),
        ]);
        let w = waves(&a);
        assert_eq!(
            names(&a, &w),
            vec![
                (Stage::Crds, vec!["roles.iam.kubesphere.io".to_string()]),
                (Stage::Objects, vec!["ks".into(), "ws".into()]),
                (Stage::Objects, vec!["role".into()]),
                (Stage::Objects, vec!["binding".into()]),
                (Stage::PutBack, vec!["default".into()]),
                (Stage::ApiServices, vec!["v1.x".into()]),
                (Stage::Webhooks, vec!["hook".into()]),
            ]
        );
    }

    #[test]
    fn an_ownership_cycle_does_not_hang() {
        let a = archive(vec![
            stored(
                "x.io",
                "A",
                None,
                "a",
                "1",
                json!({"metadata": {"ownerReferences": [{"uid": "2"}]}}),
                RestoreMode::Recreate,
            ),
            stored(
                "x.io",
                "B",
                None,
                "b",
                "2",
                json!({"metadata": {"ownerReferences": [{"uid": "1"}]}}),
                RestoreMode::Recreate,
            ),
        ]);
        let total: usize = waves(&a).iter().map(|w| w.objects.len()).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn server_set_fields_go_and_the_rest_stays() {
        let object = json!({"apiVersion": "iam.kubesphere.io/v1beta1", "kind": "User",
            "metadata": {"name": "admin", "uid": "u", "resourceVersion": "5", "creationTimestamp": "t", "managedFields": [],
                "deletionTimestamp": "t", "deletionGracePeriodSeconds": 0, "generation": 3, "selfLink": "/x",
                "labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"]},
            "spec": {"email": "e"}, "status": {"state": "Active"}});
        let ready = prepare_for_create(&object, false);
        assert_eq!(
            ready,
            json!({"apiVersion": "iam.kubesphere.io/v1beta1", "kind": "User",
                "metadata": {"name": "admin", "labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"]},
                "spec": {"email": "e"}})
        );
        assert_eq!(
            prepare_for_create(&object, true)["status"],
            json!({"state": "Active"})
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]}});
        assert_eq!(
            prepare_for_create(&svc, false)["spec"],
            json!({"ports": [{"port": 80}]})
        );
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"metadata": {"labels": {"controller-uid": "u", "batch.kubernetes.io/controller-uid": "u", "job-name": "j"}}}}});
        assert_eq!(
            prepare_for_create(&job, false)["spec"],
            json!({"template": {"metadata": {"labels": {"job-name": "j"}}}})
        );
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "None"}});
        assert_eq!(
            prepare_for_create(&headless, false)["spec"]["clusterIP"],
            "None"
        );
    }

    #[test]
    fn owner_references_follow_re_created_owners_and_missing_ones_are_dropped() {
        let mut object = json!({"metadata": {"name": "x", "ownerReferences": [
            {"kind": "Workspace", "name": "ws", "uid": "old-ws"},
            {"kind": "Thing", "name": "live", "uid": "old-live"},
            {"kind": "Gone", "name": "g", "uid": "old-gone"}]}});
        let new_uids = HashMap::from([("old-ws".to_string(), "new-ws".to_string())]);
        let dropped = remap_owner_references(&mut object, &new_uids, |r| {
            (r["name"] == "live").then(|| "live-uid".to_string())
        });
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0]["name"], "g");
        let uids: Vec<&str> = object["metadata"]["ownerReferences"]
            .as_array()
            .expect("refs")
            .iter()
            .map(|r| r["uid"].as_str().expect("uid"))
            .collect();
        assert_eq!(uids, ["new-ws", "live-uid"]);
        let mut lonely = json!({"metadata": {"ownerReferences": [{"uid": "z"}]}});
        remap_owner_references(&mut lonely, &HashMap::new(), |_| None);
        assert!(lonely["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn put_back_adds_only_what_is_missing_and_never_overrides() {
        let live = json!({"metadata": {"uid": "u", "resourceVersion": "7",
            "labels": {"team": "a", "kubesphere.io/managed": "false"},
            "finalizers": ["acme.io/keep"]}});
        let removed = RemovedMetadata {
            labels: [
                ("kubesphere.io/workspace".into(), "w".into()),
                ("kubesphere.io/managed".into(), "true".into()),
            ]
            .into(),
            annotations: [("kubesphere.io/creator".into(), "admin".into())].into(),
            finalizers: vec![
                "kubesphere.io/cascading-deletion".into(),
                "acme.io/keep".into(),
            ],
            owner_references: vec![],
        };
        let owners = vec![
            json!({"apiVersion": "tenant.kubesphere.io/v1beta1", "kind": "Workspace", "name": "w", "uid": "new"}),
        ];
        let (ops, conflicts) = put_back_patch(&live, &removed, &owners);
        let ops = ops.expect("patch");
        assert_eq!(conflicts, ["labels kubesphere.io/managed"]);
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("patch");
        let mut doc = live.clone();
        json_patch::patch(&mut doc, &patch).expect("applies");
        assert_eq!(
            doc["metadata"],
            json!({"uid": "u", "resourceVersion": "7",
                "labels": {"team": "a", "kubesphere.io/managed": "false", "kubesphere.io/workspace": "w"},
                "annotations": {"kubesphere.io/creator": "admin"},
                "finalizers": ["acme.io/keep", "kubesphere.io/cascading-deletion"],
                "ownerReferences": owners})
        );
        let (again, _) = put_back_patch(&doc, &removed, &owners);
        assert!(again.is_none(), "a second put-back changes nothing");
    }
}
