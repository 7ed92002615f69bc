//! The plan: a reviewable, serialisable list of phases of actions on concrete
//! objects. The executor runs it; the CLI renders and saves it.
//!
//! Execution contract: phases run strictly in order; the actions of one phase
//! are independent of each other and may run concurrently. Everything that
//! must happen before something else is in an earlier phase (e.g. a CRD's
//! conversion webhook is disabled in [`PhaseId::CrdConversion`] before the CRD
//! is deleted in [`PhaseId::Crds`]). Every mutation is bound to the target's
//! UID (delete preconditions; metadata patches test the resourceVersion and
//! remove values by value). The one removal kubesweep does not request by
//! name, [`Operation::RemovedWithCrd`], is the API server's, following from
//! the UID-bound delete of the instance's CRD.

use crate::inventory::ClusterIdentity;
use crate::resource::ObjectRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the JSON schema of [`Plan`]; bumped on incompatible changes.
/// Version 2 added [`Operation::RemovedWithCrd`]: a version-1 reader would
/// not know it, and a version-1 plan is made again rather than run by a
/// kubesweep that plans instances differently.
pub const PLAN_SCHEMA_VERSION: u32 = 2;

/// A complete removal plan for one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Always [`PLAN_SCHEMA_VERSION`] for plans this version writes.
    pub schema_version: u32,
    /// The cluster the plan was made for; applying it elsewhere is refused.
    pub cluster: ClusterIdentity,
    /// Name of the profile that proved ownership.
    pub profile: String,
    /// Version of kubesweep that made the plan.
    pub kubesweep_version: String,
    /// The options the plan was made with.
    pub options: PlanOptions,
    /// Phases in execution order; every [`PhaseId`] appears once, possibly empty.
    pub phases: Vec<Phase>,
    /// Facts the operator should know (running controllers, stuck namespaces,
    /// kept shared CRDs, broken API groups...). None of them is an action.
    pub findings: Vec<Finding>,
    /// Actions that destroy data, spelled out for the operator.
    pub data_hazards: Vec<DataHazard>,
    /// Summary counts.
    pub counts: PlanCounts,
}

impl Plan {
    /// Number of actions across all phases (the blast radius).
    pub fn total_actions(&self) -> usize {
        self.phases.iter().map(|p| p.actions.len()).sum()
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.total_actions() == 0
    }

    /// All actions in execution order, with their phase.
    pub fn actions(&self) -> impl Iterator<Item = (PhaseId, &Action)> {
        self.phases
            .iter()
            .flat_map(|p| p.actions.iter().map(move |a| (p.id, a)))
    }

    /// The phase with `id`, if present.
    pub fn phase(&self, id: PhaseId) -> Option<&Phase> {
        self.phases.iter().find(|p| p.id == id)
    }

    /// Canonical JSON: compact, the keys of every object (struct fields and
    /// maps alike) sorted, as `serde_json::Value` writes them; the input of
    /// [`Plan::digest`].
    pub fn canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to memory and serialising plain data cannot fail.
        let _ = self.write_canonical(&mut out);
        out
    }

    /// Hex sha256 of the canonical JSON: lets `apply` check it runs exactly the
    /// plan that was reviewed.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        let _ = self.write_canonical(&mut hasher);
        hex::encode(hasher.finalize())
    }

    /// Writes [`Plan::canonical_json`] one action at a time. Going through
    /// `Value` is what sorts the keys, but the whole plan as a `Value` was
    /// the largest allocation of a backup at 50,000 objects (tens of MiB for
    /// 9,558 actions); so the plan and its phases go through `Value` without
    /// their actions, and each action on its own, in the same byte order.
    fn write_canonical(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let shell = Plan {
            schema_version: self.schema_version,
            cluster: self.cluster.clone(),
            profile: self.profile.clone(),
            kubesweep_version: self.kubesweep_version.clone(),
            options: self.options.clone(),
            phases: Vec::new(),
            findings: self.findings.clone(),
            data_hazards: self.data_hazards.clone(),
            counts: self.counts.clone(),
        };
        write_object(out, &shell, "phases", |out| {
            out.write_all(b"[")?;
            for (i, phase) in self.phases.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                let shell = Phase {
                    id: phase.id,
                    actions: Vec::new(),
                };
                write_object(out, &shell, "actions", |out| {
                    out.write_all(b"[")?;
                    for (j, action) in phase.actions.iter().enumerate() {
                        if j > 0 {
                            out.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut *out, &to_value(action)?)?;
                    }
                    out.write_all(b"]")
                })?;
            }
            out.write_all(b"]")
        })
    }
}

/// `value` as a JSON object with sorted keys (compact), except that the
/// value of `key` is written by `write_key_value`.
fn write_object<W: std::io::Write>(
    out: &mut W,
    value: &impl Serialize,
    key: &str,
    write_key_value: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let serde_json::Value::Object(map) = to_value(value)? else {
        return Err(std::io::Error::other("not a JSON object"));
    };
    let mut write_key_value = Some(write_key_value);
    out.write_all(b"{")?;
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, k)?;
        out.write_all(b":")?;
        match write_key_value.take_if(|_| k == key) {
            Some(write) => write(out)?,
            None => serde_json::to_writer(&mut *out, v)?,
        }
    }
    out.write_all(b"}")
}

fn to_value(value: &impl Serialize) -> std::io::Result<serde_json::Value> {
    serde_json::to_value(value).map_err(std::io::Error::other)
}

/// Options that change what is planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanOptions {
    /// Also remove shared CRDs (e.g. `applications.app.k8s.io`) when no
    /// foreign instance uses them. Off by default: other software may install
    /// them again and expect them.
    pub include_shared_crds: bool,
    /// Plan the last-resort [`Operation::FinalizeNamespaceIfStuck`] for
    /// platform namespaces.
    pub finalize_stuck_namespaces: bool,
    /// Platform namespaces the operator wants kept: they are cleaned like user
    /// namespaces instead of deleted (e.g. a monitoring namespace still used).
    pub keep_namespaces: Vec<String>,
    /// Keep the platform's extension releases installed (the other choice
    /// KubeSphere's own uninstall hook makes): their objects, CRDs,
    /// namespaces and records stay, and the records are rewritten so that no
    /// manifest names a kind the plan removes. The platform's own release is
    /// removed all the same.
    pub keep_extensions: bool,
    /// Keep every platform namespace that holds PersistentVolumeClaims (or
    /// whose claims could not be listed) instead of deleting it with its
    /// volumes, and keep the claims of Helm releases. Absent from plans saved
    /// before it existed, which then load as `false`.
    pub keep_data: bool,
    /// Hook mode (`apply --hook`): a release whose latest record says
    /// `uninstalling` is being uninstalled by the Helm that runs the hook,
    /// which purges its records itself once the hook returns (a missing
    /// record makes `helm uninstall` fail). Its records are not deleted and
    /// their namespace is not finalized; a [`Finding::LeftForHelm`] names
    /// them. Absent from older plans, which then load as `false`.
    pub leave_uninstalling_records: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            include_shared_crds: false,
            finalize_stuck_namespaces: true,
            keep_namespaces: Vec::new(),
            keep_extensions: false,
            keep_data: false,
            leave_uninstalling_records: false,
        }
    }
}

/// Phases, in execution order (see design.md; the design's phases 3 and 7
/// are split so that everything inside one phase may run concurrently).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseId {
    /// Facts only, never actions.
    Preflight,
    /// Platform ValidatingWebhookConfigurations, before the services they
    /// call go: a `Fail` webhook without a backend rejects every request it
    /// matches, cluster-wide.
    ValidatingWebhooks,
    /// Platform MutatingWebhookConfigurations (same reason).
    MutatingWebhooks,
    /// Aggregated APIServices backed by services being removed, before those
    /// services go: a dead APIService breaks discovery for every client and
    /// blocks every namespace deletion.
    ApiServices,
    /// Workloads (and their Services) of the platform's Helm releases: the
    /// platform's controllers stop before any finalizer or CRD is touched.
    HelmWorkloads,
    /// The rest of the selected Helm releases' manifests (Background).
    HelmReleases,
    /// The release records of the selected Helm releases.
    HelmRecords,
    /// Platform metadata removed from kept namespaces and user objects;
    /// before any owner (Workspace, Application) or CRD is deleted.
    KeptObjects,
    /// Conversion webhooks of platform CRDs set to `None`, before their
    /// instances are touched: with a dead conversion webhook they can be
    /// neither listed nor patched.
    CrdConversion,
    /// Custom resources: platform finalizers stripped, deleted (Orphan when
    /// something is seen to depend on them, else Background), or, for
    /// [`Operation::RemovedWithCrd`], only stripped: their CRD's deletion in
    /// [`PhaseId::Crds`] removes them.
    CustomResources,
    /// The platform's registrations of other clusters (a KubeSphere host's
    /// `clusters.cluster.kubesphere.io` objects, profile
    /// `clusterRegistrations`), after every other custom resource: a host
    /// still running would propagate the deletion of Workspaces, IAM objects
    /// and extensions into the members through these, and the members'
    /// removal is reported against them.
    ClusterRegistrations,
    /// Platform CRDs deleted. The API server deletes the instances still
    /// there ([`Operation::RemovedWithCrd`]) and removes a CRD only once they
    /// are gone, so the phase's wait for the CRDs covers them too.
    Crds,
    /// RBAC, CSRs and hook leftovers.
    ClusterLeftovers,
    /// Platform namespaces deleted.
    Namespaces,
    /// Last resort: finalize platform namespaces stuck Terminating.
    NamespaceFinalize,
}

impl PhaseId {
    /// Every phase, in execution order.
    pub const ALL: [PhaseId; 15] = [
        PhaseId::Preflight,
        PhaseId::ValidatingWebhooks,
        PhaseId::MutatingWebhooks,
        PhaseId::ApiServices,
        PhaseId::HelmWorkloads,
        PhaseId::HelmReleases,
        PhaseId::HelmRecords,
        PhaseId::KeptObjects,
        PhaseId::CrdConversion,
        PhaseId::CustomResources,
        PhaseId::ClusterRegistrations,
        PhaseId::Crds,
        PhaseId::ClusterLeftovers,
        PhaseId::Namespaces,
        PhaseId::NamespaceFinalize,
    ];

    /// Short human title.
    pub fn title(self) -> &'static str {
        match self {
            PhaseId::Preflight => "preflight",
            PhaseId::HelmWorkloads => "helm release workloads",
            PhaseId::HelmReleases => "helm release objects",
            PhaseId::HelmRecords => "helm release records",
            PhaseId::ValidatingWebhooks => "validating webhooks",
            PhaseId::MutatingWebhooks => "mutating webhooks",
            PhaseId::ApiServices => "aggregated APIServices",
            PhaseId::KeptObjects => "kept namespaces and user objects",
            PhaseId::CustomResources => "custom resources",
            PhaseId::ClusterRegistrations => "member cluster registrations",
            PhaseId::CrdConversion => "CRD conversion webhooks",
            PhaseId::Crds => "CRDs",
            PhaseId::ClusterLeftovers => "cluster-scoped leftovers",
            PhaseId::Namespaces => "platform namespaces",
            PhaseId::NamespaceFinalize => "stuck namespaces (last resort)",
        }
    }

    /// Whether the executor should wait until the phase's deleted targets are
    /// gone before starting the next phase.
    pub fn waits_for_deletion(self) -> bool {
        matches!(
            self,
            PhaseId::HelmWorkloads
                | PhaseId::HelmReleases
                | PhaseId::CustomResources
                | PhaseId::ClusterRegistrations
                | PhaseId::Crds
                | PhaseId::Namespaces
        )
    }
}

impl fmt::Display for PhaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// One phase: actions that may run concurrently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Which phase.
    pub id: PhaseId,
    /// The actions, in a stable order (sorted by target).
    pub actions: Vec<Action>,
}

/// One change to one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The object, bound to the UID and resourceVersion seen at discovery.
    pub target: ObjectRef,
    /// What to do.
    pub operation: Operation,
    /// Why the object is the platform's: the profile rule that proved it.
    pub reason: String,
    /// Whether the action destroys data (Secrets, ConfigMaps, PVCs, a whole
    /// namespace's content); such actions are also listed as [`DataHazard`]s.
    pub destroys_data: bool,
}

impl Action {
    /// Whether the action deletes a Deployment in the foreground: once the
    /// executor's wait for it is over, its pods are gone. In
    /// [`PhaseId::HelmWorkloads`] this is how the plan stops a platform
    /// controller before anything else changes.
    pub fn stops_a_workload(&self) -> bool {
        let deployment =
            self.target.resource.group == "apps" && self.target.resource.kind == "Deployment";
        let foreground = matches!(
            self.operation,
            Operation::Delete {
                propagation: Propagation::Foreground
            } | Operation::StripFinalizersThenDelete {
                propagation: Propagation::Foreground,
                ..
            }
        );
        deployment && foreground
    }
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Propagation {
    /// Dependents lose their owner reference and stay.
    Orphan,
    /// The garbage collector deletes dependents after the owner.
    Background,
    /// The owner stays (with finalizer `foregroundDeletion`) until the
    /// garbage collector has deleted its dependents: used for the platform's
    /// controllers, so that "deleted" means their pods are gone too.
    Foreground,
}

/// What an action does to its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Operation {
    /// Delete with UID precondition.
    Delete {
        /// Propagation policy.
        propagation: Propagation,
    },
    /// Remove exactly these entries, by value, and nothing else (a JSON patch
    /// testing resourceVersion, or re-read and retry on conflict). Entries
    /// already absent count as done.
    StripMetadata {
        /// Label keys to remove.
        labels: Vec<String>,
        /// Annotation keys to remove.
        annotations: Vec<String>,
        /// `metadata.finalizers` values to remove.
        finalizers: Vec<String>,
        /// UIDs of `metadata.ownerReferences` entries to remove.
        owner_reference_uids: Vec<String>,
    },
    /// Remove these `metadata.finalizers` values (by value, keeping any
    /// other), then delete with UID precondition. `finalizers` may be empty.
    StripFinalizersThenDelete {
        /// Finalizers to remove first.
        finalizers: Vec<String>,
        /// Propagation policy of the delete.
        propagation: Propagation,
    },
    /// Remove these `metadata.finalizers` values (all the object has: none
    /// is foreign) and send no delete: the API server deletes the object
    /// when it deletes its CRD, which this plan deletes in [`PhaseId::Crds`]
    /// with the CRD's UID as precondition. Planned only for instances of a
    /// CRD that is the platform's alone, whose instances were all listed,
    /// that nothing is seen to depend on (it would be deleted with
    /// Background propagation) and that carry no foreign finalizer; every
    /// other instance gets [`Operation::StripFinalizersThenDelete`]. With no
    /// finalizers to remove nothing is sent for the object at all.
    RemovedWithCrd {
        /// Finalizers to remove (may be empty).
        finalizers: Vec<String>,
        /// Name of the CRD whose deletion removes the object.
        crd: String,
    },
    /// Set `spec.conversion` of a CRD to `{strategy: None}` so its objects can
    /// be listed and deleted although the conversion service is gone.
    DisableConversionWebhook,
    /// Last resort for a platform namespace: only when it is already
    /// Terminating (deletionTimestamp set), still exists after the
    /// executor's wait budget, and its conditions show no content left
    /// (`NamespaceContentRemaining` and `NamespaceFinalizersRemaining` not
    /// `True`) or `NamespaceDeletionDiscoveryFailure` is the only obstacle,
    /// then remove `spec.finalizers` entry `kubernetes` via
    /// `PUT /api/v1/namespaces/<ns>/finalize` (keeping labels and everything
    /// else). Otherwise do nothing and report the conditions.
    FinalizeNamespaceIfStuck,
    /// Rewrite a kept Helm release record (a Secret or ConfigMap) so that its
    /// manifest no longer names these kinds, which the plan removes: its
    /// `release` value is decoded, the documents of those kinds dropped, and
    /// it is written back in Helm's encoding with everything else unchanged
    /// (a JSON patch testing the UID and resourceVersion). Nothing is
    /// written when the manifest names none of them.
    RewriteHelmRecord {
        /// The kinds to drop from the manifest.
        remove_kinds: Vec<crate::helm::GroupKind>,
    },
}

impl Operation {
    /// Short verb for tables.
    pub fn verb(&self) -> &'static str {
        match self {
            Operation::Delete { .. } => "delete",
            Operation::StripMetadata { .. } => "strip metadata",
            Operation::StripFinalizersThenDelete { .. } => "strip finalizers, delete",
            Operation::RemovedWithCrd { .. } => "strip finalizers, removed with its CRD",
            Operation::DisableConversionWebhook => "disable conversion webhook",
            Operation::FinalizeNamespaceIfStuck => "finalize if stuck",
            Operation::RewriteHelmRecord { .. } => "rewrite helm record",
        }
    }

    /// Whether the plan removes the target: by a delete of its own, or
    /// through its CRD's deletion ([`Operation::RemovedWithCrd`]).
    pub fn deletes(&self) -> bool {
        matches!(
            self,
            Operation::Delete { .. }
                | Operation::StripFinalizersThenDelete { .. }
                | Operation::RemovedWithCrd { .. }
        )
    }

    /// Whether kubesweep itself sends a delete for the target (so the
    /// phase that sends it waits for the target to go).
    pub fn sends_delete(&self) -> bool {
        matches!(
            self,
            Operation::Delete { .. } | Operation::StripFinalizersThenDelete { .. }
        )
    }
}

/// Severity of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// May slow or block the removal; read before applying.
    Warning,
}

/// A fact the operator should know; not an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Finding {
    /// A platform controller still runs: it may recreate what is removed.
    ControllerRunning {
        /// Namespace of the Deployment.
        namespace: String,
        /// Deployment name.
        name: String,
        /// `spec.replicas`.
        replicas: i64,
        /// `status.readyReplicas`.
        ready_replicas: i64,
        /// The plan itself deletes the Deployment, in the Helm workloads phase
        /// and in the foreground (so its pods are gone before the next phase): the
        /// controller needs no scaling down first.
        #[serde(default)]
        stopped_by_plan: bool,
    },
    /// A namespace is already Terminating; its conditions say why it stays.
    NamespaceTerminating {
        /// Namespace name.
        name: String,
        /// `type: message` of each condition whose status is True.
        conditions: Vec<String>,
        /// `spec.finalizers` and `metadata.finalizers` left.
        finalizers: Vec<String>,
    },
    /// An object is already being deleted (has a deletionTimestamp).
    AlreadyTerminating {
        /// The object.
        target: ObjectRef,
        /// Its finalizers.
        finalizers: Vec<String>,
    },
    /// A shared CRD is kept.
    SharedCrdKept {
        /// CRD name.
        crd: String,
        /// Why (foreign instances, or shared CRDs not included).
        reason: String,
        /// Up to a few foreign instances, `namespace/name`.
        foreign_instances: Vec<String>,
    },
    /// An API group failed discovery.
    ApiGroupUnavailable {
        /// `group/version`.
        group_version: String,
        /// Error message.
        message: String,
    },
    /// A list failed; the plan may be incomplete for that type.
    ListFailed {
        /// `plural.group`.
        resource: String,
        /// Namespace, when namespaced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Error message.
        message: String,
    },
    /// A binding that stays (or that the plan deletes as the platform's)
    /// whose ServiceAccount subjects live in namespaces the plan deletes:
    /// whoever re-creates such a namespace and ServiceAccount inherits the
    /// bound role. A security fact: foreign bindings are only reported.
    DanglingBinding {
        /// The ClusterRoleBinding or RoleBinding.
        target: ObjectRef,
        /// The role it grants, `Kind/name`.
        role: String,
        /// The subjects, `ServiceAccount namespace/name`.
        subjects: Vec<String>,
        /// Whether the plan deletes it (proven the platform's).
        removed: bool,
    },
    /// Hook mode: the records of a release Helm is uninstalling right now
    /// are left for Helm's purge (see [`PlanOptions::leave_uninstalling_records`]).
    LeftForHelm {
        /// `namespace/name` of the release.
        release: String,
        /// Namespace of the records.
        namespace: String,
        /// Plural resource of the records: `secrets` or `configmaps`.
        resource: String,
        /// Names of the records.
        records: Vec<String>,
    },
    /// Something matched a rule but was deliberately left alone.
    Skipped {
        /// What was skipped, e.g. `validatingwebhookconfigurations/x`.
        subject: String,
        /// Why.
        reason: String,
    },
}

impl Finding {
    /// How much the operator should care.
    pub fn severity(&self) -> Severity {
        match self {
            Finding::ControllerRunning {
                stopped_by_plan: true,
                ..
            } => Severity::Info,
            Finding::ControllerRunning { .. }
            | Finding::NamespaceTerminating { .. }
            | Finding::ApiGroupUnavailable { .. }
            | Finding::ListFailed { .. }
            | Finding::Skipped { .. }
            | Finding::DanglingBinding { removed: false, .. } => Severity::Warning,
            Finding::DanglingBinding { removed: true, .. } => Severity::Info,
            Finding::AlreadyTerminating { .. }
            | Finding::SharedCrdKept { .. }
            | Finding::LeftForHelm { .. } => Severity::Info,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ControllerRunning {
                namespace,
                name,
                replicas,
                ready_replicas,
                stopped_by_plan,
            } => {
                write!(
                    f,
                    "controller {namespace}/{name} still runs ({ready_replicas}/{replicas} ready)"
                )?;
                if *stopped_by_plan {
                    f.write_str(": the plan deletes it first, waiting for its pods to go")
                } else {
                    f.write_str(": it may recreate what is removed; scale it to zero first")
                }
            }
            Finding::NamespaceTerminating {
                name,
                conditions,
                finalizers,
            } => {
                write!(f, "namespace {name} is already terminating")?;
                if !finalizers.is_empty() {
                    write!(f, "; finalizers: {}", finalizers.join(", "))?;
                }
                if !conditions.is_empty() {
                    write!(f, "; {}", conditions.join("; "))?;
                }
                Ok(())
            }
            Finding::AlreadyTerminating { target, finalizers } => {
                write!(f, "{target} is already terminating")?;
                if !finalizers.is_empty() {
                    write!(f, " (finalizers: {})", finalizers.join(", "))?;
                }
                Ok(())
            }
            Finding::SharedCrdKept {
                crd,
                reason,
                foreign_instances,
            } => {
                write!(f, "shared CRD {crd} kept: {reason}")?;
                if !foreign_instances.is_empty() {
                    write!(f, " ({})", foreign_instances.join(", "))?;
                }
                Ok(())
            }
            Finding::ApiGroupUnavailable {
                group_version,
                message,
            } => write!(f, "API group {group_version} is unavailable: {message}"),
            Finding::ListFailed {
                resource,
                namespace,
                message,
            } => match namespace {
                Some(ns) => write!(f, "listing {resource} in {ns} failed: {message}"),
                None => write!(f, "listing {resource} failed: {message}"),
            },
            Finding::Skipped { subject, reason } => write!(f, "{subject} left alone: {reason}"),
            Finding::LeftForHelm {
                release,
                namespace,
                resource,
                records,
            } => write!(
                f,
                "helm release {release} is being uninstalled by Helm: its records ({resource} {namespace}/{}) are left for Helm to purge",
                records.join(", ")
            ),
            Finding::DanglingBinding {
                target,
                role,
                subjects,
                removed,
            } => {
                write!(
                    f,
                    "{target} grants {role} to {} in namespaces this plan deletes; ",
                    subjects.join(", ")
                )?;
                if *removed {
                    f.write_str("the plan deletes it (the platform's)")
                } else {
                    f.write_str(
                        "not the platform's, so it stays: whoever re-creates those ServiceAccounts gets the role; review or delete it",
                    )
                }
            }
        }
    }
}

/// An action that destroys data, explained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHazard {
    /// The object whose removal destroys data.
    pub target: ObjectRef,
    /// What is lost.
    pub description: String,
}

/// Summary counts of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    /// All actions.
    pub actions: usize,
    /// Actions that delete their target.
    pub deletes: usize,
    /// Of [`PlanCounts::deletes`], the custom resources removed by their
    /// CRD's deletion rather than one delete each.
    #[serde(default)]
    pub removed_with_crds: usize,
    /// Metadata strips on kept objects.
    pub metadata_strips: usize,
    /// Other actions (conversion, finalize).
    pub other: usize,
    /// Actions flagged `destroys_data`.
    pub destroying_data: usize,
    /// Findings of severity warning.
    pub warnings: usize,
}

impl PlanCounts {
    /// Counts for `phases` and `findings`.
    pub fn compute(phases: &[Phase], findings: &[Finding]) -> Self {
        let mut counts = PlanCounts::default();
        for action in phases.iter().flat_map(|p| &p.actions) {
            counts.actions += 1;
            match &action.operation {
                op if op.deletes() => {
                    counts.deletes += 1;
                    if !op.sends_delete() {
                        counts.removed_with_crds += 1;
                    }
                }
                Operation::StripMetadata { .. } => counts.metadata_strips += 1,
                _ => counts.other += 1,
            }
            if action.destroys_data {
                counts.destroying_data += 1;
            }
        }
        counts.warnings = findings
            .iter()
            .filter(|f| f.severity() == Severity::Warning)
            .count();
        counts
    }
}
