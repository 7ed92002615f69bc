//! What discovery observed of Helm releases: the inventory's `helm` part.
//! Every release in the cluster is summarised (its manifest's object
//! identities are small) so the planner can apply the selection rules
//! itself; only selected releases have their live objects read.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};

use super::manifest::{ChartCrd, ManifestObject, ManifestProblem};
use super::record::StorageDriver;
use super::rewrite::{GroupKind, manifest_kinds};
use crate::resource::ResourceType;

/// Helm releases observed in the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HelmInventory {
    /// Every release with at least one readable record.
    pub releases: Vec<ObservedRelease>,
    /// Records that could not be decoded.
    pub unreadable: Vec<UnreadableRecord>,
}

/// One release: its records, the revision acted on, and what it created.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ObservedRelease {
    /// Release name.
    pub name: String,
    /// Release namespace.
    pub namespace: String,
    /// Storage driver of its records.
    pub driver: Option<StorageDriver>,
    /// Revision whose manifest is used: the latest, whatever its state, as
    /// `helm uninstall` does (a newer `failed` or `pending-*` revision may
    /// name objects the last `deployed` one does not); how far its word goes
    /// depends on that state ([`super::ownership::record_trust`]).
    pub revision: i64,
    /// `info.status` of that revision.
    pub status: String,
    /// `chart-version`.
    pub chart: String,
    /// Every stored record of the release (all revisions), whole (a backup
    /// must be able to restore the release): `helm uninstall` removes all of them.
    pub records: Vec<DynamicObject>,
    /// Objects named by the manifest of `revision`.
    pub objects: Vec<ManifestObject>,
    /// Manifest documents that could not be used.
    pub problems: Vec<ManifestProblem>,
    /// CRDs of the chart's `crds/` folder.
    pub chart_crds: Vec<ChartCrd>,
    /// Live objects read for a selected release (manifest objects and chart
    /// CRDs that exist); empty for releases the profile does not select.
    pub live: Vec<LiveObject>,
    /// Manifest objects whose kind the server no longer serves.
    pub unserved: Vec<ManifestObject>,
    /// The kinds each decoded record's manifest names, by record name: a
    /// kept release's records are rewritten when they name a removed kind.
    pub record_kinds: BTreeMap<String, Vec<GroupKind>>,
    /// Records of a storage format kubesweep does not read (a Secret type
    /// other than `helm.sh/release.v1`, a name `sh.helm.release.v2.*`...),
    /// as `name (type)`: a newer Helm wrote them, so what the release is now
    /// is unknown; the release is reported and left alone, these records
    /// are never touched (they are not in `records`).
    pub unknown_records: Vec<String>,
}

/// A release's object as it exists in the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveObject {
    /// The type it was read as.
    pub resource: ResourceType,
    /// The object (metadata is what the plan needs).
    pub object: DynamicObject,
    /// Whether it comes from the chart's `crds/` folder rather than the manifest.
    #[serde(default)]
    pub chart_crd: bool,
}

/// A record that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableRecord {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// Namespace of the record.
    pub namespace: String,
    /// Name of the record.
    pub name: String,
    /// Why it could not be read.
    pub message: String,
}

/// Name prefix of the records Helm 3 (and Helm 4, still) writes.
const RECORD_PREFIX: &str = "sh.helm.release.v1.";

/// The format of a record kubesweep does not read, or `None` for a
/// `helm.sh/release.v1` record or an object that is no record at all.
fn unknown_format(object: &DynamicObject, name: &str) -> Option<String> {
    let secret_type = object.data.get("type").and_then(serde_json::Value::as_str);
    match secret_type {
        Some(t) if t.starts_with("helm.sh/release.") && t != super::record::RELEASE_SECRET_TYPE => {
            return Some(format!("type {t}"));
        }
        _ => {}
    }
    let other_version = name.starts_with("sh.helm.release.") && !name.starts_with(RECORD_PREFIX);
    other_version.then(|| {
        let version = name
            .trim_start_matches("sh.helm.release.")
            .split('.')
            .next()
            .unwrap_or_default();
        format!("storage format {version}")
    })
}

/// Groups decoded records by release and picks the revision to act on. Pure.
pub fn summarise(records: Vec<(StorageDriver, DynamicObject)>) -> HelmInventory {
    let mut out = HelmInventory::default();
    let mut by_release: BTreeMap<(String, String), ObservedRelease> = BTreeMap::new();
    // (release key) -> revision of the record chosen so far.
    let mut chosen: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (driver, mut object) in records {
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let record_name = object.metadata.name.clone().unwrap_or_default();
        let kind = match driver {
            StorageDriver::Secret => "Secret",
            StorageDriver::ConfigMap => "ConfigMap",
        };
        // Helm names records `sh.helm.release.v1.<release>.v<N>`; other
        // objects labelled owner=helm are not records, except the records of
        // a storage format this version does not know.
        if let Some(format) = unknown_format(&object, &record_name) {
            if let Some((release, _)) = super::record::record_identity(&object) {
                by_release
                    .entry((namespace.clone(), release.clone()))
                    .or_insert_with(|| ObservedRelease {
                        name: release,
                        namespace: namespace.clone(),
                        driver: Some(driver),
                        ..ObservedRelease::default()
                    })
                    .unknown_records
                    .push(format!("{record_name} ({format})"));
            }
            continue;
        }
        if !record_name.starts_with(RECORD_PREFIX) {
            continue;
        }
        // Items of a LIST carry no kind; the driver says which it is.
        object.types = Some(kube::api::TypeMeta {
            api_version: "v1".into(),
            kind: kind.into(),
        });
        let decoded = super::record::decode_stored_record(&object);
        let record = match decoded {
            Ok(record) => record,
            Err(err) => {
                let mut message = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(s) = source {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    source = s.source();
                }
                out.unreadable.push(UnreadableRecord {
                    kind: kind.into(),
                    namespace: namespace.clone(),
                    name: record_name.clone(),
                    message,
                });
                // Still attribute it to its release so it is removed with it.
                if let Some((release, _)) = super::record::record_identity(&object) {
                    let entry = by_release
                        .entry((namespace.clone(), release.clone()))
                        .or_insert_with(|| ObservedRelease {
                            name: release,
                            namespace: namespace.clone(),
                            driver: Some(driver),
                            ..ObservedRelease::default()
                        });
                    entry.records.push(object);
                }
                continue;
            }
        };
        let key = (namespace.clone(), record.name.clone());
        let entry = by_release
            .entry(key.clone())
            .or_insert_with(|| ObservedRelease {
                name: record.name.clone(),
                namespace: namespace.clone(),
                driver: Some(driver),
                ..ObservedRelease::default()
            });
        entry.records.push(object);
        entry.record_kinds.insert(
            record_name.clone(),
            manifest_kinds(&record.manifest).into_iter().collect(),
        );
        // The latest revision, as `helm uninstall` takes it: not the newest
        // `deployed` one, which may miss what a later failed upgrade created.
        let better = chosen
            .get(&key)
            .is_none_or(|&revision| record.version > revision);
        if better {
            chosen.insert(key, record.version);
            let (objects, mut problems) = super::manifest::parse_manifest(&record.manifest);
            let (chart_crds, crd_problems) = super::manifest::chart_crds(&record.crd_files);
            problems.extend(crd_problems);
            entry.revision = record.version;
            entry.status = record.status;
            entry.chart = format!("{}-{}", record.chart_name, record.chart_version);
            entry.objects = objects;
            entry.problems = problems;
            entry.chart_crds = chart_crds;
        }
    }
    out.releases = by_release.into_values().collect();
    for release in &mut out.releases {
        release
            .records
            .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    out
}

/// The type of a release record: a Secret (Helm's default driver) or a
/// ConfigMap, as its `kind` says.
pub fn record_type(record: &DynamicObject) -> ResourceType {
    let kind = record.types.as_ref().map_or("Secret", |t| t.kind.as_str());
    let (kind, plural) = if kind == "ConfigMap" {
        ("ConfigMap", "configmaps")
    } else {
        ("Secret", "secrets")
    };
    ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced: true,
    }
}
