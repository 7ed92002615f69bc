//! The planner's Helm part: the releases the profile selects are removed the
//! way `helm uninstall` removes them, then the pipeline does the rest.
//!
//! - [`PhaseId::HelmWorkloads`]: front ends and workloads of every selected
//!   release (Helm deletes those first); for the platform's own release these
//!   are its controllers, which must stop before anything else changes.
//! - [`PhaseId::HelmReleases`]: the rest of each manifest, Background
//!   propagation like Helm. Objects another phase already handles (webhooks,
//!   platform custom resources with finalizers, platform RBAC, namespaces)
//!   are left to that phase, so each object has exactly one delete.
//! - [`PhaseId::HelmRecords`]: the release records of every revision, last,
//!   so an interrupted run still finds the release and finishes it.
//!
//! A record names objects; it does not prove they are still the release's
//! (see [`crate::helm::ownership`]). The latest revision is acted on, as
//! `helm uninstall` does, and a live object it names is deleted only when
//! its Helm annotations name the release, or, carrying none, when the
//! profile proves it the platform's another way. An object whose
//! annotations name another release is that release's: skipped, reported.
//! A latest record in state `uninstalled` deletes nothing but the records;
//! a `superseded` one only what is annotated as the release's.
//!
//! Objects annotated `helm.sh/resource-policy: keep` are kept as Helm keeps
//! them. Chart CRDs (Helm never deletes them) in platform groups go with the
//! platform's CRDs; those in other groups are shared: kept unless shared
//! CRDs are included, and then only when every instance could be listed and
//! none is foreign (the rule of the profile's shared CRDs).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::helm::{self, RecordTrust, ReleaseClaim, ReleaseKey};

/// The annotation that makes Helm keep an object on uninstall.
const RESOURCE_POLICY: &str = "helm.sh/resource-policy";

impl Planner<'_> {
    pub(super) fn helm_releases(&mut self) {
        let inventory = self.inventory;
        let selection = self.releases.clone();
        for record in &inventory.helm.unreadable {
            self.findings.push(Finding::Skipped {
                subject: format!(
                    "helm release record {} {}/{}",
                    record.kind, record.namespace, record.name
                ),
                reason: format!("cannot be decoded: {}", record.message),
            });
        }
        for (release, cluster, why) in &selection.member_releases {
            self.findings.push(Finding::Skipped {
                subject: format!("helm release {release} in member cluster {cluster}"),
                reason: format!(
                    "{why}; it lives in that cluster: run kubesweep against it (members before the host)"
                ),
            });
        }
        for release in &inventory.helm.releases {
            let key = ReleaseKey {
                namespace: release.namespace.clone(),
                name: release.name.clone(),
            };
            let Some(selected) = selection.selected.get(&key) else {
                continue;
            };
            if !release.unknown_records.is_empty() {
                self.findings.push(Finding::Skipped {
                    subject: format!("helm release {key}"),
                    reason: format!(
                        "{}, but records {} are in a format kubesweep does not read (it reads {}): what the release is now is unknown, so neither it, its records nor its namespace are touched",
                        selected.reason,
                        release.unknown_records.join(", "),
                        helm::RELEASE_SECRET_TYPE
                    ),
                });
                continue;
            }
            if self.kept.releases.contains(&key) {
                self.findings.push(Finding::Skipped {
                    subject: format!("helm release {key} revision {}", release.revision),
                    reason: format!(
                        "{}; kept on request (--keep-extensions): its objects stay, its records drop the kinds the plan removes",
                        selected.reason
                    ),
                });
                continue;
            }
            let why = format!(
                "helm release {key} revision {} ({})",
                release.revision, selected.reason
            );
            let trust = helm::record_trust(&release.status);
            if trust == RecordTrust::RecordsOnly {
                self.records_only(&key, release);
            } else {
                self.release_findings(&key, release);
                for live in &release.live {
                    self.helm_object(&key, &why, selected.platform, trust, live);
                }
            }
            if self.options.leave_uninstalling_records && release.status == "uninstalling" {
                self.leave_for_helm(&key, release);
                continue;
            }
            for record in &release.records {
                let Some(target) = ObjectRef::from_object(&helm::record_type(record), record)
                else {
                    continue;
                };
                self.push(
                    PhaseId::HelmRecords,
                    target,
                    delete(Propagation::Background),
                    format!("release record of {why}"),
                );
            }
        }
    }

    /// Hook mode: the release Helm is uninstalling keeps its records (Helm
    /// purges them after its post-delete hooks), and their namespace is
    /// never finalized over them.
    fn leave_for_helm(&mut self, key: &ReleaseKey, release: &helm::ObservedRelease) {
        let resource = release
            .records
            .first()
            .map(|r| helm::record_type(r).plural)
            .unwrap_or_else(|| "secrets".to_owned());
        let mut records: Vec<String> = release
            .records
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect();
        records.sort();
        self.records_left_for_helm.insert(release.namespace.clone());
        self.findings.push(Finding::LeftForHelm {
            release: key.to_string(),
            namespace: release.namespace.clone(),
            resource,
            records,
        });
    }

    /// Findings on the parts of a release's manifest that cannot be acted on.
    fn release_findings(&mut self, key: &ReleaseKey, release: &helm::ObservedRelease) {
        for problem in &release.problems {
            self.findings.push(Finding::Skipped {
                subject: format!(
                    "document {} ({}) of helm release {key}",
                    problem.document,
                    problem.source.as_deref().unwrap_or("no source")
                ),
                reason: problem.message.clone(),
            });
        }
        for object in &release.unserved {
            self.findings.push(Finding::Skipped {
                subject: format!(
                    "{} ({}) of helm release {key}",
                    object.describe(),
                    object.api_version
                ),
                reason: "its kind is no longer served, so no such object can exist".into(),
            });
        }
    }

    /// A release whose latest record says `uninstalled`: its records go, the
    /// objects with the names it lists stay (one finding names them).
    fn records_only(&mut self, key: &ReleaseKey, release: &helm::ObservedRelease) {
        let live: Vec<String> = release
            .live
            .iter()
            .filter_map(|l| ObjectRef::from_object(&l.resource, &l.object))
            .map(|t| t.to_string())
            .collect();
        if live.is_empty() {
            return;
        }
        let quoted: Vec<&str> = live
            .iter()
            .take(QUOTED_INSTANCES)
            .map(String::as_str)
            .collect();
        self.findings.push(Finding::Skipped {
            subject: format!(
                "{} object(s) named by helm release {key} revision {} ({}: {})",
                live.len(),
                release.revision,
                release.status,
                quoted.join(", ")
            ),
            reason: "the release was uninstalled with its history kept: Helm deleted what it owned, so what has those names now was re-created since or kept on purpose; only the records are removed".into(),
        });
    }

    /// Why the release's record does not make `live` the release's, or
    /// `None` when it does (see the module documentation).
    fn not_the_release_object(
        &self,
        key: &ReleaseKey,
        trust: RecordTrust,
        target: &ObjectRef,
        live: &helm::LiveObject,
    ) -> Option<String> {
        match helm::release_claim(&live.object.metadata, key) {
            ReleaseClaim::Ours => None,
            ReleaseClaim::Other(other) => Some(format!(
                "named by helm release {key}, but its annotations say it belongs to helm release {other} (Helm does not delete it either)"
            )),
            ReleaseClaim::Unclaimed if trust == RecordTrust::AnnotatedOnly => Some(format!(
                "named only by a superseded record of helm release {key} and not annotated as its object"
            )),
            ReleaseClaim::Unclaimed => match self.unannotated_proof(key, target, live) {
                Some(_) => None,
                None => Some(format!(
                    "named by helm release {key}, but it carries no Helm ownership annotations and nothing else proves it the platform's"
                )),
            },
        }
    }

    /// Another proof for a release object without Helm's annotations (Helm
    /// before 3.2 wrote none): a platform group, a namespace that is the
    /// platform's, the profile's RBAC proofs, an owner reference to a
    /// platform kind, or a platform label whose value names the release.
    fn unannotated_proof(
        &self,
        key: &ReleaseKey,
        target: &ObjectRef,
        live: &helm::LiveObject,
    ) -> Option<String> {
        let meta = &live.object.metadata;
        let group = live.resource.group.as_str();
        if self.profile.owns_group(group) {
            return Some(format!("its API group {group} is the platform's"));
        }
        if let Some(ns) = target.namespace.as_deref()
            && self.is_platform_namespace(ns)
        {
            return Some(format!("it lives in the platform namespace {ns}"));
        }
        if group == "rbac.authorization.k8s.io"
            && let Some(proof) = self.profile.rbac_proof(&live.resource.kind, meta)
        {
            return Some(proof);
        }
        if let Some(proof) = self.profile.platform_owner_proof(meta) {
            return Some(proof);
        }
        let labels = meta.labels.as_ref()?;
        helm::label_naming_release(&self.profile.helm, labels, &key.name)
            .map(|l| format!("it carries the platform label {l}={}", labels[l]))
    }

    fn helm_object(
        &mut self,
        key: &ReleaseKey,
        why: &str,
        platform_release: bool,
        trust: RecordTrust,
        live: &helm::LiveObject,
    ) {
        let Some(target) = ObjectRef::from_object(&live.resource, &live.object) else {
            return;
        };
        let kind = live.resource.kind.as_str();
        if live.resource.group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" {
            self.helm_crd(key, trust, target, live);
            return;
        }
        // Namespaces follow the namespace rules (created by the platform or
        // not, kept on request), whoever rendered them.
        if live.resource.group.is_empty() && kind == "Namespace" {
            return;
        }
        if let Some(reason) = self.not_the_release_object(key, trust, &target, live) {
            self.findings.push(Finding::Skipped {
                subject: target.to_string(),
                reason,
            });
            return;
        }
        let meta = &live.object.metadata;
        if meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESOURCE_POLICY))
            .is_some_and(|v| v == "keep")
        {
            self.findings.push(Finding::Skipped {
                subject: target.to_string(),
                reason: format!("{RESOURCE_POLICY}: keep (Helm keeps it on uninstall too)"),
            });
            return;
        }
        if self.is_protected(&target) {
            return;
        }
        self.note_terminating(&target, &live.object);
        let workload = helm::is_workload(kind);
        let phase = if workload {
            PhaseId::HelmWorkloads
        } else {
            PhaseId::HelmReleases
        };
        // The platform's own workloads are its controllers: deleting them in
        // the foreground makes the phase's wait last until their pods are
        // gone, so nothing of the platform runs when webhooks, finalizers and
        // CRDs are touched.
        let propagation = if workload && platform_release {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        let finalizers = self.profile.platform_finalizers(meta);
        let operation = if finalizers.is_empty() {
            delete(propagation)
        } else {
            Operation::StripFinalizersThenDelete {
                finalizers,
                propagation,
            }
        };
        let volume = live.resource.group.is_empty() && kind == "PersistentVolumeClaim";
        if volume && self.options.keep_data {
            self.findings.push(Finding::Skipped {
                subject: target.to_string(),
                reason: format!(
                    "PersistentVolumeClaim of helm release {key} kept on request (--keep-data)"
                ),
            });
            return;
        }
        if volume {
            self.hazards.push(DataHazard {
                target: target.clone(),
                description: format!(
                    "PersistentVolumeClaim {} of helm release {key} is deleted; its volume follows its reclaim policy",
                    target.name
                ),
            });
        }
        self.push_action(
            phase,
            Action {
                target,
                operation,
                reason: format!("object of {why}"),
                destroys_data: volume,
            },
        );
    }

    /// A CRD a release brought (chart `crds/` or a template).
    fn helm_crd(
        &mut self,
        key: &ReleaseKey,
        trust: RecordTrust,
        target: ObjectRef,
        live: &helm::LiveObject,
    ) {
        let group = live
            .object
            .data
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Platform and shared-by-profile CRDs are decided with the others.
        if self.profile.crd_role(&target.name, group).is_some() {
            return;
        }
        let from = if live.chart_crd {
            "in the chart's crds/ folder"
        } else {
            "in the manifest"
        };
        let subject =
            format!("CRD {from} of helm release {key} in group {group}, outside the platform's");
        let kept = |reason: String, foreign: &[String]| Finding::SharedCrdKept {
            crd: target.name.clone(),
            reason,
            foreign_instances: foreign.iter().take(QUOTED_INSTANCES).cloned().collect(),
        };
        match helm::release_claim(&live.object.metadata, key) {
            ReleaseClaim::Other(other) => {
                self.findings.push(kept(
                    format!("{subject}: its annotations say it belongs to helm release {other}"),
                    &[],
                ));
                return;
            }
            ReleaseClaim::Unclaimed if trust == RecordTrust::AnnotatedOnly => {
                self.findings.push(kept(
                    format!("{subject}: named only by a superseded record"),
                    &[],
                ));
                return;
            }
            _ => {}
        }
        if !self.options.include_shared_crds {
            self.findings.push(kept(
                format!(
                    "{subject}: other software may use it (kept unless shared CRDs are included)"
                ),
                &[],
            ));
            return;
        }
        let inventory = self.inventory;
        let Some(listed) = inventory.crds.iter().find(|c| c.name() == target.name) else {
            self.findings.push(kept(
                format!(
                    "{subject}: its instances were not listed, so foreign use cannot be ruled out"
                ),
                &[],
            ));
            return;
        };
        let foreign: Vec<String> = listed
            .instances
            .iter()
            .filter(|i| !self.is_removed_release_object(i))
            .map(namespaced_name)
            .collect();
        let included =
            format!("{subject}: shared CRDs included on request; no foreign instance uses it");
        if let Some(reason) = self.foreign_use_decision(listed, foreign, included) {
            self.note_terminating(&target, &live.object);
            self.push(
                PhaseId::Crds,
                target,
                delete(Propagation::Background),
                reason,
            );
        }
    }

    /// Whether `object` goes with the plan anyway: it lives in a platform
    /// namespace, or it is an object of a release the plan removes (read as
    /// one of its live objects, or annotated as one).
    fn is_removed_release_object(&self, object: &DynamicObject) -> bool {
        if object
            .metadata
            .namespace
            .as_deref()
            .is_some_and(|ns| self.is_platform_namespace(ns))
        {
            return true;
        }
        let removed = |key: &ReleaseKey| self.removes_release(key);
        if helm::claimed_release(&object.metadata).is_some_and(|k| removed(&k)) {
            return true;
        }
        let Some(uid) = object.metadata.uid.as_deref() else {
            return false;
        };
        self.inventory.helm.releases.iter().any(|r| {
            removed(&ReleaseKey {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }) && helm::record_trust(&r.status) != RecordTrust::RecordsOnly
                && r.live
                    .iter()
                    .any(|l| l.object.metadata.uid.as_deref() == Some(uid))
        })
    }

    /// Whether the plan removes release `key`: selected, not kept, and all
    /// its records readable.
    fn removes_release(&self, key: &ReleaseKey) -> bool {
        self.releases.selected.contains_key(key)
            && !self.kept.releases.contains(key)
            && !self.inventory.helm.releases.iter().any(|r| {
                r.namespace == key.namespace && r.name == key.name && !r.unknown_records.is_empty()
            })
    }

    /// The release that `meta`'s Helm annotations name, when that release is
    /// installed (its latest record is not `uninstalled`) and the plan does
    /// not remove it: the object is that release's, whatever else the
    /// profile would say. A claim naming a release that is gone (ks-core
    /// after `helm uninstall`) or one the plan removes decides nothing.
    pub(super) fn installed_foreign_release(&self, meta: &ObjectMeta) -> Option<ReleaseKey> {
        let claimed = helm::claimed_release(meta)?;
        if self.removes_release(&claimed) {
            return None;
        }
        self.inventory
            .helm
            .releases
            .iter()
            .any(|r| {
                r.namespace == claimed.namespace
                    && r.name == claimed.name
                    && helm::record_trust(&r.status) != RecordTrust::RecordsOnly
            })
            .then_some(claimed)
    }
}

impl Planner<'_> {
    /// Drops every action on a live object of a release with records in a
    /// format kubesweep does not read, metadata strips included: what that
    /// release is now is unknown, so its objects are left as they are.
    /// Objects of the platform's own kinds are the exception: they go with
    /// their CRDs whatever is done here.
    pub(super) fn spare_unreadable_releases(&mut self) {
        let spared: HashSet<&str> = self
            .inventory
            .helm
            .releases
            .iter()
            .filter(|r| !r.unknown_records.is_empty())
            .flat_map(|r| &r.live)
            .filter(|l| !self.profile.owns_group(&l.resource.group))
            .filter_map(|l| l.object.metadata.uid.as_deref())
            .collect();
        if spared.is_empty() {
            return;
        }
        for actions in self.phases.values_mut() {
            actions.retain(|a| !spared.contains(a.target.uid.as_str()));
        }
    }
}

/// Drops from the Helm phases every action on an object another phase acts
/// on: that phase knows the object's kind better (webhooks first, finalizers
/// stripped, namespaces by their rules). A metadata strip is no such action:
/// a release object in a kept namespace carries platform labels, and must
/// still be deleted (the strip is then dropped, see `finish`).
pub(super) fn leave_to_other_phases(phases: &mut BTreeMap<PhaseId, Vec<Action>>) {
    let helm_phases = [PhaseId::HelmWorkloads, PhaseId::HelmReleases];
    let elsewhere: HashSet<String> = phases
        .iter()
        .filter(|(id, _)| !helm_phases.contains(id))
        .flat_map(|(_, actions)| actions)
        .filter(|a| !matches!(a.operation, Operation::StripMetadata { .. }))
        .map(|a| a.target.uid.clone())
        .collect();
    for id in helm_phases {
        if let Some(actions) = phases.get_mut(&id) {
            actions.retain(|a| !elsewhere.contains(&a.target.uid));
        }
    }
}

/// Marks the running-controller findings whose Deployment the plan deletes
/// in its first phase, in the foreground (the rule preflight applies too):
/// those controllers stop as part of the plan.
pub(super) fn mark_controllers_stopped_by_plan(
    phases: &BTreeMap<PhaseId, Vec<Action>>,
    findings: &mut [Finding],
) {
    let deleted_first: HashSet<(String, String)> = phases
        .get(&PhaseId::HelmWorkloads)
        .into_iter()
        .flatten()
        .filter(|a| a.stops_a_workload())
        .map(|a| {
            (
                a.target.namespace.clone().unwrap_or_default(),
                a.target.name.clone(),
            )
        })
        .collect();
    for finding in findings {
        if let Finding::ControllerRunning {
            namespace,
            name,
            stopped_by_plan,
            ..
        } = finding
        {
            *stopped_by_plan = deleted_first.contains(&(namespace.clone(), name.clone()));
        }
    }
}
