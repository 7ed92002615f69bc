//! The planner: a pure function from a profile and an inventory to a plan.
//!
//! It decides, object by object, whether the profile proves the object is
//! the platform's, and which phase acts on it. Ordering guarantees that
//! matter for safety live here:
//! - webhooks go first, because a `Fail` webhook whose service is gone
//!   rejects the updates that strip finalizers;
//! - kept namespaces and user objects lose their owner references to
//!   Workspaces/Applications before any owner or CRD is deleted, or the
//!   garbage collector deletes user namespaces (kubesphere#3772);
//! - instances before their CRDs, CRDs before namespaces, and protected
//!   namespaces never get a delete or finalize, whatever the profile says.

use super::model::*;
use crate::inventory::{CrdInventory, DiscoveryIssue, Inventory, types};
use crate::profile::{CrdRole, Profile, SharedCrdRule};
use crate::resource::{ObjectRef, ResourceType};
use kube::api::DynamicObject;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

mod cascade;
mod data;
mod deleted_namespaces;
mod executor;
mod helm;
mod kept_releases;
mod named_namespaces;

pub use named_namespaces::{
    CONTENT_SKIP, namespaces_named_by_platform, namespaces_needing_content,
};

/// How many foreign instances a finding quotes.
const QUOTED_INSTANCES: usize = 5;

/// Plans the removal of `profile`'s footprint from the cluster `inventory`
/// describes. Pure and deterministic: the same input gives the same plan
/// (and digest); an inventory without platform objects gives no actions.
pub fn plan(profile: &Profile, inventory: &Inventory, options: &PlanOptions) -> Plan {
    let mut planner = Planner::new(profile, inventory, options);
    planner.run();
    planner.finish()
}

/// Why a namespace is deleted or kept.
#[derive(Clone, Debug)]
enum NamespaceFate {
    Delete(String),
    Keep(String),
}

struct Planner<'a> {
    profile: &'a Profile,
    inventory: &'a Inventory,
    options: &'a PlanOptions,
    phases: BTreeMap<PhaseId, Vec<Action>>,
    findings: Vec<Finding>,
    hazards: Vec<DataHazard>,
    /// Namespaces the plan deletes.
    deleted_namespaces: BTreeSet<String>,
    /// Platform namespaces kept only for their data (`--keep-data`): not
    /// deleted, but still the platform's, so services in them are platform
    /// services (webhooks, APIServices) and shared-CRD instances in them are
    /// platform instances, exactly as if the namespace were deleted.
    data_kept_namespaces: BTreeSet<String>,
    /// Namespace → its PersistentVolumeClaims' names.
    claims: BTreeMap<String, Vec<String>>,
    /// Fate of every observed namespace.
    namespace_fates: BTreeMap<String, NamespaceFate>,
    /// UIDs of proven platform instances of shared CRDs (owner references to
    /// them are removed from kept objects).
    platform_shared_uids: HashSet<String>,
    /// The Helm releases the profile selects.
    releases: crate::helm::ReleaseSelection,
    /// What `--keep-extensions` keeps (empty without it).
    kept: kept_releases::KeptReleases,
    /// UIDs named by an owner reference of any observed object; `None` when
    /// a list failed, so that dependents cannot be ruled out.
    owners: Option<HashSet<String>>,
    /// Namespaces holding records left for Helm's purge (hook mode): never
    /// finalized, or the records would go with them.
    records_left_for_helm: BTreeSet<String>,
}

impl<'a> Planner<'a> {
    fn new(profile: &'a Profile, inventory: &'a Inventory, options: &'a PlanOptions) -> Self {
        Self {
            profile,
            inventory,
            options,
            phases: PhaseId::ALL.iter().map(|id| (*id, Vec::new())).collect(),
            findings: Vec::new(),
            hazards: Vec::new(),
            deleted_namespaces: BTreeSet::new(),
            data_kept_namespaces: BTreeSet::new(),
            claims: data::claims_by_namespace(inventory),
            namespace_fates: BTreeMap::new(),
            platform_shared_uids: HashSet::new(),
            releases: crate::helm::select_releases(profile, inventory),
            kept: kept_releases::KeptReleases::default(),
            owners: None,
            records_left_for_helm: BTreeSet::new(),
        }
    }

    fn run(&mut self) {
        self.discovery_findings();
        self.controllers();
        self.kept = kept_releases::KeptReleases::of(
            self.profile,
            self.inventory,
            self.options,
            &self.releases,
        );
        self.classify_namespaces();
        self.classify_shared_instances();
        self.helm_releases();
        self.webhooks();
        self.api_services();
        // After the APIServices: an unavailable group the plan removes anyway
        // does not hide dependents of the platform's resources.
        self.owners = observed_owners(self.inventory, &self.removed_api_services());
        self.kept_namespaces();
        self.kept_objects();
        self.custom_resources();
        self.cluster_leftovers();
        self.executor_leftovers();
        self.namespaces();
        self.finalizers_in_deleted_namespaces();
        self.dangling_bindings();
        // Last: it needs to know every CRD the plan deletes.
        self.keep_extension_releases();
        self.spare_unreadable_releases();
    }

    fn finish(self) -> Plan {
        let Planner {
            profile,
            inventory,
            options,
            mut phases,
            findings,
            mut hazards,
            ..
        } = self;
        helm::leave_to_other_phases(&mut phases);
        let mut findings = findings;
        helm::mark_controllers_stopped_by_plan(&phases, &mut findings);
        // Discovery may report an object both as a kept object (it carries
        // platform metadata) and in its own role (a proven RBAC object, a
        // shared-CRD instance): an object that is deleted is not also patched,
        // which would only change the resourceVersion the delete is bound to.
        let deleted: HashSet<String> = phases
            .values()
            .flatten()
            .filter(|a| a.operation.deletes())
            .map(|a| a.target.uid.clone())
            .collect();
        let mut phases: Vec<Phase> = phases
            .into_iter()
            .map(|(id, mut actions)| {
                if id == PhaseId::KeptObjects {
                    actions.retain(|a| !deleted.contains(&a.target.uid));
                }
                (id, actions)
            })
            .map(|(id, mut actions)| {
                actions.sort_by(|a, b| a.target.cmp(&b.target));
                actions.dedup_by(|a, b| a.target == b.target && a.operation == b.operation);
                Phase {
                    id,
                    actions: enforce_protection(profile, actions),
                }
            })
            .collect();
        // Once every phase is final: instances left to a CRD that is kept
        // after all get their own delete.
        cascade::settle(&mut phases, &findings);
        hazards.sort_by(|a, b| a.target.cmp(&b.target));
        let counts = PlanCounts::compute(&phases, &findings);
        Plan {
            schema_version: PLAN_SCHEMA_VERSION,
            cluster: inventory.cluster.clone(),
            profile: profile.name.clone(),
            kubesweep_version: env!("CARGO_PKG_VERSION").to_owned(),
            options: options.clone(),
            phases,
            findings,
            data_hazards: hazards,
            counts,
        }
    }

    fn push(&mut self, phase: PhaseId, target: ObjectRef, operation: Operation, reason: String) {
        self.push_action(
            phase,
            Action {
                target,
                operation,
                reason,
                destroys_data: false,
            },
        );
    }

    fn push_action(&mut self, phase: PhaseId, action: Action) {
        if let Some(actions) = self.phases.get_mut(&phase) {
            actions.push(action);
        }
    }

    fn note_terminating(&mut self, target: &ObjectRef, object: &DynamicObject) {
        if object.metadata.deletion_timestamp.is_some() {
            self.findings.push(Finding::AlreadyTerminating {
                target: target.clone(),
                finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
            });
        }
    }

    // Phase 1: facts.

    fn discovery_findings(&mut self) {
        for issue in &self.inventory.issues {
            self.findings.push(match issue.clone() {
                DiscoveryIssue::ApiGroupUnavailable {
                    group_version,
                    message,
                } => Finding::ApiGroupUnavailable {
                    group_version,
                    message,
                },
                DiscoveryIssue::ListFailed {
                    resource,
                    namespace,
                    message,
                } => Finding::ListFailed {
                    resource,
                    namespace,
                    message,
                },
            });
        }
    }

    fn controllers(&mut self) {
        for deployment in &self.inventory.controllers {
            let ns = deployment.metadata.namespace.as_deref().unwrap_or_default();
            let name = deployment.metadata.name.as_deref().unwrap_or_default();
            if !self
                .profile
                .controllers
                .iter()
                .any(|c| c.namespace == ns && c.name == name)
            {
                continue;
            }
            // spec.replicas defaults to 1 when unset.
            let replicas = int_at(&deployment.data, "/spec/replicas").unwrap_or(1);
            let ready = int_at(&deployment.data, "/status/readyReplicas").unwrap_or(0);
            if replicas > 0 || ready > 0 {
                self.findings.push(Finding::ControllerRunning {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    replicas,
                    ready_replicas: ready,
                    stopped_by_plan: false,
                });
            }
        }
    }

    // Namespace and shared-instance classification (no actions yet).

    fn classify_namespaces(&mut self) {
        let named = namespaces_named_by_platform(self.profile, self.inventory);
        let project_label = self.profile.namespaces.project_label.as_deref();
        for ns in &self.inventory.namespaces {
            let Some(name) = ns.metadata.name.clone() else {
                continue;
            };
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            let project = project_label
                .and_then(|l| labels.get(l))
                .filter(|v| !self.profile.namespaces.system_project_values.contains(v));
            let fate = if self.profile.is_protected_namespace(&name) {
                NamespaceFate::Keep("protected system namespace".into())
            } else if self.options.keep_namespaces.contains(&name) {
                NamespaceFate::Keep("kept on request (--keep-namespace)".into())
            } else if let Some(release) = self.unreadable_release_in(&name) {
                NamespaceFate::Keep(format!(
                    "holds records of helm release {release} in a format kubesweep does not read"
                ))
            } else if let Some(release) = self.kept.release_in(&name) {
                NamespaceFate::Keep(format!(
                    "holds helm release {release}, kept on request (--keep-extensions)"
                ))
            } else if self.profile.namespaces.delete.contains(&name) {
                NamespaceFate::Delete(
                    "namespace created by the platform (listed by the profile)".into(),
                )
            } else if let Some(ws) = project {
                NamespaceFate::Keep(format!("user project of workspace `{ws}`"))
            } else if let Some(rule) = self.profile.namespaces.delete_when.iter().find(|r| {
                name.starts_with(&r.prefix) && r.labels.iter().any(|l| labels.contains_key(l))
            }) {
                NamespaceFate::Delete(format!(
                    "name starts with `{}` and carries a platform label ({})",
                    rule.prefix,
                    rule.labels.join(", ")
                ))
            } else if let Some(source) = named.get(&name) {
                self.named_namespace_fate(&name, source)
            } else {
                NamespaceFate::Keep("not the platform's".into())
            };
            let fate = self.keep_data_instead(&name, fate);
            if matches!(fate, NamespaceFate::Delete(_)) {
                self.deleted_namespaces.insert(name.clone());
            }
            self.namespace_fates.insert(name, fate);
        }
    }

    /// A release in namespace `name` with records kubesweep cannot read
    /// (a newer Helm's format): deleting the namespace would take them.
    fn unreadable_release_in(&self, name: &str) -> Option<String> {
        self.inventory
            .helm
            .releases
            .iter()
            .find(|r| r.namespace == name && !r.unknown_records.is_empty())
            .map(|r| r.name.clone())
    }

    /// `--keep-data` turns the deletion of a namespace that holds (or may
    /// hold) PersistentVolumeClaims into keeping it, said in a finding.
    fn keep_data_instead(&mut self, name: &str, fate: NamespaceFate) -> NamespaceFate {
        let NamespaceFate::Delete(reason) = fate else {
            return fate;
        };
        let Some(why) = self.keep_for_data(name) else {
            return NamespaceFate::Delete(reason);
        };
        self.data_kept_namespaces.insert(name.to_owned());
        self.findings.push(Finding::Skipped {
            subject: format!("namespace {name}"),
            reason: format!("platform namespace ({reason}) that {why}"),
        });
        NamespaceFate::Keep(why)
    }

    /// Whether `namespace` is the platform's: deleted by the plan, or kept
    /// only for its data.
    fn is_platform_namespace(&self, namespace: &str) -> bool {
        self.deleted_namespaces.contains(namespace) || self.data_kept_namespaces.contains(namespace)
    }

    fn instance_is_platform(&self, rule: &SharedCrdRule, object: &DynamicObject) -> bool {
        object
            .metadata
            .namespace
            .as_ref()
            .is_some_and(|ns| self.is_platform_namespace(ns))
            || self
                .profile
                .shared_instance_is_platform(rule, &object.metadata)
    }

    fn classify_shared_instances(&mut self) {
        let mut uids = HashSet::new();
        for crd in &self.inventory.crds {
            if let Some(CrdRole::Shared(rule)) = self.profile.crd_role(crd.name(), crd.group()) {
                for instance in &crd.instances {
                    if self.instance_is_platform(rule, instance)
                        && let Some(uid) = &instance.metadata.uid
                    {
                        uids.insert(uid.clone());
                    }
                }
            }
        }
        self.platform_shared_uids = uids;
    }

    // Phases 3 and 4.

    fn webhooks(&mut self) {
        let inventory = self.inventory;
        for (phase, rt, list) in [
            (
                PhaseId::ValidatingWebhooks,
                types::validating_webhook(),
                &inventory.validating_webhooks,
            ),
            (
                PhaseId::MutatingWebhooks,
                types::mutating_webhook(),
                &inventory.mutating_webhooks,
            ),
        ] {
            for config in list {
                let Some(target) = ObjectRef::from_object(&rt, config) else {
                    continue;
                };
                if let Some(reason) = self.webhook_proof(&target, config) {
                    self.push(phase, target, delete(Propagation::Background), reason);
                }
            }
        }
    }

    fn is_platform_service(&self, namespace: &str, name: &str) -> bool {
        self.is_platform_namespace(namespace)
            || self
                .profile
                .webhooks
                .services
                .iter()
                .any(|s| s.namespace == namespace && s.name == name)
    }

    /// A configuration is the platform's when its name is listed or one of its
    /// webhooks calls a platform service; it is left alone (with a finding)
    /// when it also calls something else, since deleting it would remove
    /// another program's webhooks.
    fn webhook_proof(&mut self, target: &ObjectRef, config: &DynamicObject) -> Option<String> {
        let by_name = self.profile.webhooks.names.contains(&target.name);
        let mut platform_services = BTreeSet::new();
        let mut foreign = BTreeSet::new();
        for hook in config
            .data
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let service = hook.pointer("/clientConfig/service");
            let ns = service
                .and_then(|s| s.get("namespace"))
                .and_then(Value::as_str);
            let name = service.and_then(|s| s.get("name")).and_then(Value::as_str);
            match (ns, name) {
                (Some(ns), Some(name)) if self.is_platform_service(ns, name) => {
                    platform_services.insert(format!("{ns}/{name}"));
                }
                (Some(ns), Some(name)) => {
                    foreign.insert(format!("service {ns}/{name}"));
                }
                _ if by_name => {}
                _ => {
                    let url = hook.pointer("/clientConfig/url").and_then(Value::as_str);
                    foreign.insert(format!("url {}", url.unwrap_or("?")));
                }
            }
        }
        if !by_name && platform_services.is_empty() {
            return None;
        }
        if !foreign.is_empty() {
            self.findings.push(Finding::Skipped {
                subject: target.to_string(),
                reason: format!(
                    "calls the platform but also {}",
                    foreign.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
            return None;
        }
        Some(if by_name {
            "webhook configuration name is listed by the profile".to_owned()
        } else {
            format!(
                "webhooks call the platform service {}",
                platform_services.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
    }

    fn api_services(&mut self) {
        let rt = types::api_service();
        for svc in &self.inventory.api_services {
            let Some(target) = ObjectRef::from_object(&rt, svc) else {
                continue;
            };
            // Local APIServices (no service) are managed by the aggregator itself.
            let Some(service) = svc.data.pointer("/spec/service") else {
                continue;
            };
            let ns = service
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = service
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let reason = if self.deleted_namespaces.contains(ns) {
                format!("backed by service {ns}/{name} in a namespace this plan deletes")
            } else if self.data_kept_namespaces.contains(ns) {
                format!("backed by service {ns}/{name} in a platform namespace kept for its data")
            } else if self
                .profile
                .api_services
                .services
                .iter()
                .any(|s| s.namespace == ns && s.name == name)
            {
                format!("backed by the platform service {ns}/{name}")
            } else {
                continue;
            };
            self.push(
                PhaseId::ApiServices,
                target,
                delete(Propagation::Background),
                reason,
            );
        }
    }

    // Phase 5.

    fn strip_action(&self, object: &DynamicObject, namespace: bool) -> Option<Operation> {
        let meta = &object.metadata;
        let labels = self.profile.strippable_labels(meta, namespace);
        let annotations = self.profile.strippable_annotations(meta, namespace);
        let finalizers = self.profile.platform_finalizers(meta);
        let owner_reference_uids = self
            .profile
            .platform_owner_reference_uids(meta, &self.platform_shared_uids);
        if labels.is_empty()
            && annotations.is_empty()
            && finalizers.is_empty()
            && owner_reference_uids.is_empty()
        {
            return None;
        }
        Some(Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        })
    }

    fn kept_namespaces(&mut self) {
        let rt = types::namespace();
        for ns in &self.inventory.namespaces {
            let Some(target) = ObjectRef::from_object(&rt, ns) else {
                continue;
            };
            let Some(NamespaceFate::Keep(why)) = self.namespace_fates.get(&target.name).cloned()
            else {
                continue;
            };
            if let Some(op) = self.strip_action(ns, true) {
                let reason = format!("kept namespace ({why}): remove only the platform's metadata");
                self.push(PhaseId::KeptObjects, target, op, reason);
            }
        }
    }

    fn kept_objects(&mut self) {
        for list in &self.inventory.kept_objects {
            // Instances of platform CRDs are removed in their own phase.
            if self.profile.owns_group(&list.resource.group) {
                continue;
            }
            for object in &list.objects {
                if let Some(ns) = &object.metadata.namespace
                    && !matches!(
                        self.namespace_fates.get(ns),
                        Some(NamespaceFate::Keep(_)) | None
                    )
                {
                    continue;
                }
                let Some(target) = ObjectRef::from_object(&list.resource, object) else {
                    continue;
                };
                if self.is_protected(&target) {
                    continue;
                }
                if let Some(op) = self.strip_action(object, list.resource.kind == "Namespace") {
                    let reason = "kept object: remove only the platform's metadata".to_owned();
                    self.push(PhaseId::KeptObjects, target, op, reason);
                }
            }
        }
    }

    // Phases 6 and 7.

    fn custom_resources(&mut self) {
        let inventory = self.inventory;
        for crd in &inventory.crds {
            let Some(role) = self.profile.crd_role(crd.name(), crd.group()) else {
                continue;
            };
            let Some(crd_target) = ObjectRef::from_object(&types::crd(), &crd.crd) else {
                continue;
            };
            if let Some(reason) = self.kept.keeps_crd(crd.name()) {
                self.findings.push(Finding::Skipped {
                    subject: format!("CRD {} and its instances", crd.name()),
                    reason,
                });
                continue;
            }
            let listed = crd.instances_listed && crd.resource.is_some();
            // The CRD whose deletion may remove the instances: the
            // platform's alone, and all of it listed (see `cascade`).
            let removed_with = matches!(role, CrdRole::Owned)
                .then_some(crd.name())
                .filter(|_| listed);
            let mut foreign = Vec::new();
            if let Some(rt) = &crd.resource {
                for instance in &crd.instances {
                    let reason = match role {
                        CrdRole::Owned => format!("instance of the platform CRD {}", crd.name()),
                        CrdRole::Shared(rule) if self.instance_is_platform(rule, instance) => {
                            format!("platform instance of the shared CRD {}", crd.name())
                        }
                        CrdRole::Shared(_) => {
                            foreign.push(namespaced_name(instance));
                            continue;
                        }
                    };
                    self.custom_resource(rt, instance, reason, removed_with);
                }
            }
            let remove_crd = match role {
                CrdRole::Owned if listed => Some(format!(
                    "CRD in the platform group {} (after its instances)",
                    crd.group()
                )),
                CrdRole::Owned => {
                    self.unlisted_platform_crd(crd, &crd_target);
                    None
                }
                CrdRole::Shared(rule) => self.shared_crd_decision(crd, rule, foreign),
            };
            if let Some(reason) = remove_crd {
                self.note_terminating(&crd_target, &crd.crd);
                if crd.has_conversion_webhook() {
                    self.push(
                        PhaseId::CrdConversion,
                        crd_target.clone(),
                        Operation::DisableConversionWebhook,
                        "its conversion webhook would be unreachable and block listing and deletion".into(),
                    );
                }
                self.push(
                    PhaseId::Crds,
                    crd_target,
                    delete(Propagation::Background),
                    reason,
                );
            }
        }
    }

    /// A platform CRD whose instances could not all be listed is kept: its
    /// deletion would make the API server delete instances nobody has seen
    /// (not backed up, finalizers not stripped), and one instance held by a
    /// finalizer would leave it Terminating for good. A dead conversion
    /// webhook is the usual cause, so it is neutralised all the same: the
    /// next run can then list the instances and finish.
    fn unlisted_platform_crd(&mut self, crd: &CrdInventory, crd_target: &ObjectRef) {
        let mut reason =
            "its instances could not be listed, so they could be neither backed up nor freed of finalizers"
                .to_owned();
        if crd.has_conversion_webhook() {
            self.push(
                PhaseId::CrdConversion,
                crd_target.clone(),
                Operation::DisableConversionWebhook,
                "its conversion webhook blocks listing its instances".into(),
            );
            reason.push_str(
                "; its conversion webhook is disabled by this run: run kubesweep again to remove them and the CRD",
            );
        }
        self.findings.push(Finding::Skipped {
            subject: format!("platform CRD {}", crd.name()),
            reason,
        });
    }

    /// Plans one instance of a platform (or shared) CRD; `removed_with` names
    /// its CRD when the plan deletes it and listed all its instances.
    fn custom_resource(
        &mut self,
        rt: &ResourceType,
        instance: &DynamicObject,
        reason: String,
        removed_with: Option<&str>,
    ) {
        let Some(target) = ObjectRef::from_object(rt, instance) else {
            return;
        };
        if self.is_protected(&target) {
            return;
        }
        self.note_terminating(&target, instance);
        let finalizers = self.profile.platform_finalizers(&instance.metadata);
        let foreign: Vec<String> = instance
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !finalizers.contains(f))
            .cloned()
            .collect();
        if !foreign.is_empty() {
            self.findings.push(Finding::Skipped {
                subject: format!("finalizers {} on {target}", foreign.join(", ")),
                reason: "not the platform's; their owner must remove them or the deletion waits"
                    .into(),
            });
        }
        // Orphan keeps whatever depends on the object (a user namespace owned
        // by a Workspace, kubesphere#3772) but costs the garbage collector a
        // write per object, at the controller manager's modest request rate:
        // half a minute for 600 objects. Objects nothing is seen to depend on
        // are deleted at once instead.
        let propagation = match &self.owners {
            Some(owners) if !owners.contains(&target.uid) => Propagation::Background,
            _ => Propagation::Orphan,
        };
        let phase = if self
            .profile
            .cluster_registrations
            .iter()
            .any(|gk| gk.group == rt.group && gk.kind == rt.kind)
        {
            PhaseId::ClusterRegistrations
        } else {
            PhaseId::CustomResources
        };
        // Cluster registrations keep their own phase and deletes.
        let removed_with = removed_with.filter(|_| phase == PhaseId::CustomResources);
        let operation =
            cascade::instance_operation(finalizers, propagation, removed_with, !foreign.is_empty());
        self.push(phase, target, operation, reason);
    }

    /// Whether a shared CRD is removed: only when asked, when all its
    /// instances could be listed, and when none is foreign.
    fn shared_crd_decision(
        &mut self,
        crd: &CrdInventory,
        rule: &SharedCrdRule,
        foreign: Vec<String>,
    ) -> Option<String> {
        let kept = |reason: String, foreign: &[String]| Finding::SharedCrdKept {
            crd: crd.name().to_owned(),
            reason,
            foreign_instances: foreign.iter().take(QUOTED_INSTANCES).cloned().collect(),
        };
        let note = if rule.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", rule.note)
        };
        if !self.options.include_shared_crds {
            self.findings.push(kept(
                format!("shared CRDs are kept unless included explicitly{note}"),
                &foreign,
            ));
            None
        } else {
            self.foreign_use_decision(
                crd,
                foreign,
                "shared CRD included on request; no foreign instance uses it".into(),
            )
        }
    }

    /// The foreign-use rule of every CRD that is not the platform's alone,
    /// once shared CRDs are included: removed (with `reason`) only when all
    /// its instances could be listed and none of them (`foreign`) is foreign;
    /// otherwise kept, said in a finding.
    fn foreign_use_decision(
        &mut self,
        crd: &CrdInventory,
        foreign: Vec<String>,
        reason: String,
    ) -> Option<String> {
        let kept = |reason: String, foreign: &[String]| Finding::SharedCrdKept {
            crd: crd.name().to_owned(),
            reason,
            foreign_instances: foreign.iter().take(QUOTED_INSTANCES).cloned().collect(),
        };
        if !crd.instances_listed || crd.resource.is_none() {
            self.findings.push(kept(
                "its instances could not be listed, so foreign use cannot be ruled out".into(),
                &[],
            ));
            None
        } else if !foreign.is_empty() {
            self.findings.push(kept(
                format!("{} foreign instance(s) use it", foreign.len()),
                &foreign,
            ));
            None
        } else {
            Some(reason)
        }
    }

    // Phase 8.

    fn cluster_leftovers(&mut self) {
        let inventory = self.inventory;
        for (rt, list) in [
            (types::cluster_role(), &inventory.cluster_roles),
            (
                types::cluster_role_binding(),
                &inventory.cluster_role_bindings,
            ),
            (types::role(), &inventory.roles),
            (types::role_binding(), &inventory.role_bindings),
        ] {
            for object in list {
                // Namespaced RBAC in a deleted namespace goes with it; in a
                // namespace kept for its data it needs its own proof, like
                // in any kept namespace.
                if object
                    .metadata
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| self.deleted_namespaces.contains(ns))
                {
                    continue;
                }
                let Some(target) = ObjectRef::from_object(&rt, object) else {
                    continue;
                };
                if let Some(reason) = self.profile.rbac_proof(&rt.kind, &object.metadata) {
                    self.strip_and_delete(PhaseId::ClusterLeftovers, target, object, reason);
                }
            }
        }
        let rt = types::csr();
        for csr in &inventory.csrs {
            let Some(target) = ObjectRef::from_object(&rt, csr) else {
                continue;
            };
            if let Some(reason) = self.profile.csr_proof(&csr.metadata) {
                self.strip_and_delete(PhaseId::ClusterLeftovers, target, csr, reason);
            }
        }
    }

    fn strip_and_delete(
        &mut self,
        phase: PhaseId,
        target: ObjectRef,
        object: &DynamicObject,
        reason: String,
    ) {
        if self.is_protected(&target) {
            return;
        }
        // Another, installed Helm release has taken the object over: the
        // profile's proof (a label it kept, say) is older than that claim.
        if let Some(owner) = self.installed_foreign_release(&object.metadata) {
            self.findings.push(Finding::Skipped {
                subject: target.to_string(),
                reason: format!(
                    "{reason}, but its annotations say it belongs to helm release {owner}, which stays installed"
                ),
            });
            return;
        }
        self.note_terminating(&target, object);
        let finalizers = self.profile.platform_finalizers(&object.metadata);
        let operation = if finalizers.is_empty() {
            delete(Propagation::Background)
        } else {
            Operation::StripFinalizersThenDelete {
                finalizers,
                propagation: Propagation::Background,
            }
        };
        self.push(phase, target, operation, reason);
    }

    // Phase 9.

    fn namespaces(&mut self) {
        let rt = types::namespace();
        for ns in &self.inventory.namespaces {
            let Some(target) = ObjectRef::from_object(&rt, ns) else {
                continue;
            };
            let Some(NamespaceFate::Delete(reason)) =
                self.namespace_fates.get(&target.name).cloned()
            else {
                continue;
            };
            if ns.metadata.deletion_timestamp.is_some() {
                self.findings.push(namespace_terminating(&target.name, ns));
            }
            self.hazards.push(DataHazard {
                target: target.clone(),
                description: self.namespace_hazard(&target.name),
            });
            // Platform finalizers on the namespace object itself would keep it forever.
            let finalizers = self.profile.platform_finalizers(&ns.metadata);
            let operation = if finalizers.is_empty() {
                delete(Propagation::Background)
            } else {
                Operation::StripFinalizersThenDelete {
                    finalizers,
                    propagation: Propagation::Background,
                }
            };
            self.push_action(
                PhaseId::Namespaces,
                Action {
                    target: target.clone(),
                    operation,
                    reason: reason.clone(),
                    destroys_data: true,
                },
            );
            if self.options.finalize_stuck_namespaces
                && !self.records_left_for_helm.contains(&target.name)
            {
                self.push_action(
                    PhaseId::NamespaceFinalize,
                    Action {
                        target,
                        operation: Operation::FinalizeNamespaceIfStuck,
                        reason: "last resort, only if still terminating with no content left"
                            .into(),
                        destroys_data: true,
                    },
                );
            }
        }
    }

    /// Names of the APIServices the plan deletes.
    fn removed_api_services(&self) -> BTreeSet<String> {
        self.phases
            .get(&PhaseId::ApiServices)
            .into_iter()
            .flatten()
            .map(|a| a.target.name.clone())
            .collect()
    }

    fn is_protected(&self, target: &ObjectRef) -> bool {
        self.profile.is_protected_object(
            &target.resource.kind,
            target.namespace.as_deref(),
            &target.name,
        )
    }
}

/// UIDs named as owners by any object the inventory observed (cluster-scoped
/// objects of other types included); `None` when a list failed or an API
/// group could not be discovered, because then an unseen object may depend
/// on anything (fail closed: everything is deleted with Orphan propagation).
/// Groups served by an APIService in `removed_api_services` are the
/// exception: they are the platform's own and go with the plan.
fn observed_owners(
    inventory: &Inventory,
    removed_api_services: &BTreeSet<String>,
) -> Option<HashSet<String>> {
    let blind = inventory.issues.iter().any(|issue| match issue {
        DiscoveryIssue::ListFailed { .. } => true,
        DiscoveryIssue::ApiGroupUnavailable { group_version, .. } => {
            !removed_api_services.contains(&api_service_name(group_version))
        }
    });
    if blind {
        return None;
    }
    let owned_cluster = inventory
        .owned_cluster_objects
        .iter()
        .flat_map(|l| &l.objects);
    let owners = inventory
        .objects()
        .into_iter()
        .map(|(_, o)| o)
        .chain(owned_cluster)
        .flat_map(|o| o.metadata.owner_references.iter().flatten())
        .map(|r| r.uid.clone())
        .collect();
    Some(owners)
}

/// The name of the APIService serving `group/version`: `<version>.<group>`.
fn api_service_name(group_version: &str) -> String {
    match group_version.split_once('/') {
        Some((group, version)) => format!("{version}.{group}"),
        None => group_version.to_owned(),
    }
}

/// Belt and braces over classification: no delete or finalize of a
/// protected namespace or a protected object, ever.
fn enforce_protection(profile: &Profile, actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| {
            let t = &a.target;
            let destructive = !matches!(a.operation, Operation::StripMetadata { .. });
            let protected_ns = t.resource.group.is_empty()
                && t.resource.kind == "Namespace"
                && profile.is_protected_namespace(&t.name);
            let protected = protected_ns
                || profile.is_protected_object(&t.resource.kind, t.namespace.as_deref(), &t.name);
            !(destructive && protected)
        })
        .collect()
}

fn delete(propagation: Propagation) -> Operation {
    Operation::Delete { propagation }
}

fn namespace_terminating(name: &str, ns: &DynamicObject) -> Finding {
    let conditions = ns
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .map(|c| {
            format!(
                "{}: {}",
                c.get("type").and_then(Value::as_str).unwrap_or("?"),
                c.get("message").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .collect();
    let mut finalizers: Vec<String> =
        crate::inventory::string_list(ns.data.pointer("/spec/finalizers"));
    finalizers.extend(ns.metadata.finalizers.clone().unwrap_or_default());
    Finding::NamespaceTerminating {
        name: name.to_owned(),
        conditions,
        finalizers,
    }
}

fn int_at(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn namespaced_name(object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    match &object.metadata.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

fn crd_kind(crd: &CrdInventory) -> String {
    crd.crd
        .data
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .map_or_else(|| crd.name().to_owned(), str::to_owned)
}

/// String values at a dotted path; `*` steps into every value of a map or list.
pub(crate) fn values_at_path(value: &Value, path: &str) -> Vec<String> {
    let mut current = vec![value];
    for step in path.split('.') {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match (step, v) {
                    ("*", Value::Object(map)) => map.values().collect(),
                    ("*", Value::Array(items)) => items.iter().collect(),
                    (key, Value::Object(map)) => map.get(key).into_iter().collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    current
        .into_iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
