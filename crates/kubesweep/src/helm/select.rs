//! Which Helm releases are the platform's: by exact name (the platform's own
//! release, e.g. `ks-core`), as named by platform custom resources (an
//! InstallPlan's `status.releaseName` in `status.targetNamespace`, and its
//! companion `<release>-agent`), or because an object of its manifest carries
//! a label only the platform writes (`kubesphere.io/extension-ref`) whose
//! value names the release (see [`label_naming_release`]: the key alone on
//! one object proves nothing about the rest of a release).
//! Releases named for member clusters are reported, not selected: they live
//! in other clusters.

use std::collections::BTreeMap;

use serde_json::Value;

use super::observed::ObservedRelease;
use crate::inventory::Inventory;
use crate::profile::{HelmRules, Profile};

/// A release's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A selected release and the rule that proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedRelease {
    /// Which release.
    pub key: ReleaseKey,
    /// Why it is the platform's.
    pub reason: String,
    /// Whether it is the platform's own release (its workloads are the
    /// platform controllers, stopped first).
    pub platform: bool,
}

/// The outcome of selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseSelection {
    /// Releases removed from this cluster, keyed for lookup.
    pub selected: BTreeMap<ReleaseKey, SelectedRelease>,
    /// `(release, cluster, why)` of releases installed in member clusters.
    pub member_releases: Vec<(String, String, String)>,
}

fn key(namespace: &str, name: &str) -> ReleaseKey {
    ReleaseKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The objects at a dotted path whose field `field` is a non-empty string,
/// with that string; `*` steps into every value of a map (its key is kept).
fn named_at<'a>(value: &'a Value, path: &str) -> Vec<(Option<String>, &'a Value, String)> {
    let Some((parent, field)) = path.rsplit_once('.') else {
        return Vec::new();
    };
    let mut current: Vec<(Option<String>, &Value)> = vec![(None, value)];
    for step in parent.split('.') {
        current = current
            .into_iter()
            .flat_map(|(k, v)| -> Vec<(Option<String>, &Value)> {
                match (step, v) {
                    ("*", Value::Object(map)) => {
                        map.iter().map(|(mk, mv)| (Some(mk.clone()), mv)).collect()
                    }
                    ("*", Value::Array(items)) => items.iter().map(|i| (k.clone(), i)).collect(),
                    (step, Value::Object(map)) => {
                        map.get(step).into_iter().map(|v| (k.clone(), v)).collect()
                    }
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    current
        .into_iter()
        .filter_map(|(k, v)| {
            let name = v.get(field)?.as_str().filter(|s| !s.is_empty())?;
            Some((k, v, name.to_owned()))
        })
        .collect()
}

/// Applies the profile's Helm rules to the observed releases and the
/// platform custom resources in `inventory`.
pub fn select_releases(profile: &Profile, inventory: &Inventory) -> ReleaseSelection {
    let rules = &profile.helm;
    let mut selection = ReleaseSelection::default();
    let releases: &[ObservedRelease] = &inventory.helm.releases;
    let exists = |k: &ReleaseKey| {
        releases
            .iter()
            .any(|r| r.namespace == k.namespace && r.name == k.name)
    };
    let mut select = |k: ReleaseKey, reason: String, platform: bool| {
        if exists(&k) {
            selection
                .selected
                .entry(k.clone())
                .or_insert(SelectedRelease {
                    key: k,
                    reason,
                    platform,
                });
        }
    };

    for r in &rules.releases {
        select(
            key(&r.namespace, &r.name),
            "the platform's own release (listed by the profile)".into(),
            true,
        );
    }

    let mut members = Vec::new();
    for (rule, member) in rules
        .extension_releases
        .iter()
        .map(|r| (r, false))
        .chain(rules.member_releases.iter().map(|r| (r, true)))
    {
        let Some(crd) = inventory.crds.iter().find(|c| c.name() == rule.crd) else {
            continue;
        };
        for instance in &crd.instances {
            let owner = instance.metadata.name.as_deref().unwrap_or_default();
            for path in &rule.paths {
                for (cluster, parent, release) in named_at(&instance.data, path) {
                    let namespace = parent
                        .get(&rules.namespace_field)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if member {
                        let cluster = cluster.unwrap_or_else(|| "?".into());
                        members.push((
                            release,
                            cluster,
                            format!("named by {} {owner} ({path})", crd_kind(crd)),
                        ));
                        continue;
                    }
                    if namespace.is_empty() {
                        continue;
                    }
                    let why = format!("named by {} {owner} ({path})", crd_kind(crd));
                    for suffix in std::iter::once("")
                        .chain(rules.companion_suffixes.iter().map(String::as_str))
                    {
                        let name = format!("{release}{suffix}");
                        let reason = if suffix.is_empty() {
                            format!("extension release {why}")
                        } else {
                            format!("companion `{name}` of the extension release {why}")
                        };
                        select(key(namespace, &name), reason, false);
                    }
                }
            }
        }
    }

    for release in releases {
        let labelled = release
            .objects
            .iter()
            .find_map(|o| label_naming_release(rules, &o.labels, &release.name).map(|l| (l, o)));
        if let Some((label, object)) = labelled {
            select(
                key(&release.namespace, &release.name),
                format!(
                    "its {} {} carries the platform label {label}={}, which names the release",
                    object.kind, object.name, object.labels[label]
                ),
                false,
            );
        }
    }
    members.sort();
    members.dedup();
    selection.member_releases = members;
    selection
}

/// The platform label (one of `rules.labels`) in `labels` whose value names
/// release `release`: `<ext>` for release `<ext>`, or for a companion
/// `<ext><suffix>`.
///
/// The value, not the key alone, is the proof: KubeSphere's templates label
/// every object of extension `<ext>` with `kubesphere.io/extension-ref=<ext>`
/// and its executor installs that extension as release `<ext>` (and
/// `<ext>-agent`). Any chart may copy the label onto one object (to show it
/// in the console, say); that does not make the whole release, and every
/// other object in it, the platform's.
pub fn label_naming_release<'a>(
    rules: &'a HelmRules,
    labels: &BTreeMap<String, String>,
    release: &str,
) -> Option<&'a str> {
    let names_release = |value: &str| {
        value == release
            || rules
                .companion_suffixes
                .iter()
                .any(|s| release.strip_suffix(s.as_str()) == Some(value))
    };
    rules
        .labels
        .iter()
        .find(|l| labels.get(l.as_str()).is_some_and(|v| names_release(v)))
        .map(String::as_str)
}

fn crd_kind(crd: &crate::inventory::CrdInventory) -> String {
    crd.crd
        .data
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_owned()
}
