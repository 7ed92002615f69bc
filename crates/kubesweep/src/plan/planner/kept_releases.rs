//! `--keep-extensions`: the platform's extension releases stay installed.
//! Everything they rendered stays (their objects, their CRDs with their
//! instances, the namespaces that hold them), except objects of kinds the
//! plan removes (a JSBundle dies with the platform's CRD), and every record
//! of theirs that names such a kind is rewritten without it, so Helm can
//! still upgrade, roll back and uninstall the release afterwards.
//!
//! An extension's CRDs are not all in its record: Helm keeps no subchart in
//! it (so not a subchart's `crds/`), and a controller may create CRDs at run
//! time. So while extensions are kept, a CRD goes only when it is proven the
//! platform's own: in the chart `crds/` or the manifest of the platform's
//! own release (ks-core), or listed by the profile as a CRD that release
//! ships (`helm.platformCrds`, for when its record is already gone). Every
//! other CRD stays, with its instances.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::helm::{GroupKind, ObservedRelease, ReleaseKey, ReleaseSelection};

/// What `--keep-extensions` keeps; empty without the option.
#[derive(Clone, Debug, Default)]
pub(super) struct KeptReleases {
    /// The kept releases.
    pub releases: BTreeSet<ReleaseKey>,
    /// Namespace → a kept release it holds.
    namespaces: BTreeMap<String, ReleaseKey>,
    /// CRD name → the kept release that brought it (chart `crds/` or manifest).
    crds: BTreeMap<String, ReleaseKey>,
    /// UID → the kept release a live object belongs to.
    objects: HashMap<String, ReleaseKey>,
    /// CRDs proven the platform's own (see the module documentation).
    platform_crds: BTreeSet<String>,
}

impl KeptReleases {
    /// The selected releases that are not the platform's own, when the
    /// options keep extensions.
    pub fn of(
        profile: &Profile,
        inventory: &Inventory,
        options: &PlanOptions,
        selection: &ReleaseSelection,
    ) -> Self {
        let mut kept = Self::default();
        if !options.keep_extensions {
            return kept;
        }
        kept.platform_crds = profile.helm.platform_crds.iter().cloned().collect();
        for release in &inventory.helm.releases {
            let key = ReleaseKey {
                namespace: release.namespace.clone(),
                name: release.name.clone(),
            };
            if selection.selected.get(&key).is_some_and(|s| s.platform) {
                kept.platform_crds.extend(release_crds(release));
            }
            let extension = selection.selected.get(&key).is_some_and(|s| !s.platform);
            if !extension {
                continue;
            }
            kept.namespaces
                .entry(key.namespace.clone())
                .or_insert_with(|| key.clone());
            for name in release_crds(release) {
                kept.crds.entry(name).or_insert_with(|| key.clone());
            }
            for live in &release.live {
                if let Some(uid) = &live.object.metadata.uid {
                    kept.objects.insert(uid.clone(), key.clone());
                }
            }
            kept.releases.insert(key);
        }
        kept
    }

    /// A kept release held by namespace `name`.
    pub fn release_in(&self, name: &str) -> Option<&ReleaseKey> {
        self.namespaces.get(name)
    }

    /// Why the CRD `name` (a platform or shared one) stays with its
    /// instances, or `None` when it may go.
    pub fn keeps_crd(&self, name: &str) -> Option<String> {
        if let Some(release) = self.crds.get(name) {
            return Some(format!(
                "brought by helm release {release}, kept on request (--keep-extensions)"
            ));
        }
        if self.releases.is_empty() || self.platform_crds.contains(name) {
            return None;
        }
        Some(
            "not proven the platform's own (neither in its own release's chart or manifest nor listed by the profile): a kept extension (--keep-extensions) may have brought it through a subchart's crds/, which Helm's record does not keep, or created it at run time".into(),
        )
    }
}

/// The CRDs a release's record names: its chart's `crds/` and its manifest's.
fn release_crds(release: &ObservedRelease) -> impl Iterator<Item = String> + '_ {
    let manifest = release
        .objects
        .iter()
        .filter(|o| o.group() == "apiextensions.k8s.io" && o.kind == "CustomResourceDefinition")
        .map(|o| o.name.clone());
    release
        .chart_crds
        .iter()
        .map(|c| c.name.clone())
        .chain(manifest)
}

impl Planner<'_> {
    /// Group and kind of every CRD the plan deletes.
    fn removed_kinds(&self) -> BTreeSet<GroupKind> {
        let deleted: HashSet<&str> = self
            .phases
            .get(&PhaseId::Crds)
            .into_iter()
            .flatten()
            .filter(|a| a.operation.deletes())
            .map(|a| a.target.uid.as_str())
            .collect();
        self.inventory
            .crds
            .iter()
            .filter(|c| {
                c.crd
                    .metadata
                    .uid
                    .as_deref()
                    .is_some_and(|uid| deleted.contains(uid))
            })
            .filter_map(|c| {
                let kind = c.crd.data.pointer("/spec/names/kind")?.as_str()?;
                Some(GroupKind {
                    group: c.group().to_owned(),
                    kind: kind.to_owned(),
                })
            })
            .collect()
    }

    /// The kept releases' part of the plan, once every other phase is
    /// planned (it needs the CRDs the plan deletes).
    pub(super) fn keep_extension_releases(&mut self) {
        if self.kept.releases.is_empty() {
            return;
        }
        let removed = self.removed_kinds();
        self.spare_kept_release_objects(&removed);
        self.rewrite_kept_release_records(&removed);
    }

    /// Drops every action on a kept release's object, unless its kind is
    /// removed (then it goes with its CRD, as it must).
    fn spare_kept_release_objects(&mut self, removed: &BTreeSet<GroupKind>) {
        let kept = &self.kept;
        for actions in self.phases.values_mut() {
            actions.retain(|a| {
                let kind = GroupKind {
                    group: a.target.resource.group.clone(),
                    kind: a.target.resource.kind.clone(),
                };
                !kept.objects.contains_key(&a.target.uid) || removed.contains(&kind)
            });
        }
    }

    /// Plans the rewrite of each record of a kept release whose manifest
    /// names a kind the plan removes, or a platform kind that is no longer
    /// served (a rewrite an earlier run could not finish).
    fn rewrite_kept_release_records(&mut self, removed: &BTreeSet<GroupKind>) {
        let served: HashSet<(&str, &str)> = self
            .inventory
            .resource_types
            .iter()
            .map(|r| (r.group.as_str(), r.kind.as_str()))
            .collect();
        let gone = |k: &GroupKind| {
            removed.contains(k)
                || (self.profile.owns_group(&k.group)
                    && !served.contains(&(k.group.as_str(), k.kind.as_str())))
        };
        let mut actions = Vec::new();
        for release in &self.inventory.helm.releases {
            let key = ReleaseKey {
                namespace: release.namespace.clone(),
                name: release.name.clone(),
            };
            // Records of a format not read here stay as they are (see
            // `ObservedRelease::unknown_records`); neither are the others
            // rewritten, which would fork the release's history.
            if !self.kept.releases.contains(&key) || !release.unknown_records.is_empty() {
                continue;
            }
            for record in &release.records {
                let name = record.metadata.name.as_deref().unwrap_or_default();
                let remove_kinds: Vec<GroupKind> = release
                    .record_kinds
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|k| gone(k))
                    .cloned()
                    .collect();
                if remove_kinds.is_empty() {
                    continue;
                }
                let Some(target) =
                    ObjectRef::from_object(&crate::helm::record_type(record), record)
                else {
                    continue;
                };
                let names: Vec<String> = remove_kinds.iter().map(ToString::to_string).collect();
                actions.push(Action {
                    target,
                    operation: Operation::RewriteHelmRecord { remove_kinds },
                    reason: format!(
                        "record of helm release {key}, kept on request (--keep-extensions): its manifest names {}, which the plan removes",
                        names.join(", ")
                    ),
                    destroys_data: false,
                });
            }
        }
        for action in actions {
            self.push_action(PhaseId::HelmRecords, action);
        }
    }
}
