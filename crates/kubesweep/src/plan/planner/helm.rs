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
//! Objects annotated `helm.sh/resource-policy: keep` are kept as Helm keeps
//! them. Chart CRDs (Helm never deletes them) in platform groups go with the
//! platform's CRDs; those in other groups are shared and kept unless shared
//! CRDs are included.

use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::helm::{self, ReleaseKey};

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
            for live in &release.live {
                self.helm_object(&key, &why, selected.platform, live);
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

    fn helm_object(
        &mut self,
        key: &ReleaseKey,
        why: &str,
        platform_release: bool,
        live: &helm::LiveObject,
    ) {
        let Some(target) = ObjectRef::from_object(&live.resource, &live.object) else {
            return;
        };
        let kind = live.resource.kind.as_str();
        if live.resource.group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" {
            self.helm_crd(key, target, live);
            return;
        }
        // Namespaces follow the namespace rules (created by the platform or
        // not, kept on request), whoever rendered them.
        if live.resource.group.is_empty() && kind == "Namespace" {
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
    fn helm_crd(&mut self, key: &ReleaseKey, target: ObjectRef, live: &helm::LiveObject) {
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
        if self.options.include_shared_crds {
            self.note_terminating(&target, &live.object);
            self.push(
                PhaseId::Crds,
                target,
                delete(Propagation::Background),
                format!(
                    "CRD {from} of helm release {key}, group {group} outside the platform's: shared CRDs included on request"
                ),
            );
        } else {
            self.findings.push(Finding::SharedCrdKept {
                crd: target.name,
                reason: format!(
                    "CRD {from} of helm release {key} in group {group}, outside the platform's: other software may use it (kept unless shared CRDs are included)"
                ),
                foreign_instances: Vec::new(),
            });
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
