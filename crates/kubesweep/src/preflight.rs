//! Preflight: what must hold before a plan runs. Which permissions the run
//! needs (discovery's reads and the plan's changes) and which of them the
//! caller lacks (proven in tiers, [`crate::access_review`]), which platform controllers still run
//! (they would recreate what we remove), and stopping them (scale to zero,
//! wait until their pods are gone, bounded).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::discover::error_message;
use crate::inventory::{DiscoveryIssue, Inventory, types};
use crate::plan::{Operation, PhaseId, Plan};
use crate::profile::Profile;
use crate::retry::{self, RetryPolicy};

/// One permission: a verb on a resource (optionally a subresource), in a
/// namespace or cluster-wide.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    /// `get`, `list`, `patch`, `update`, `delete`.
    pub verb: String,
    /// API group; empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, e.g. `finalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace; `None` for cluster-scoped resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if let Some(sub) = &self.subresource {
            resource = format!("{resource}/{sub}");
        }
        match &self.namespace {
            Some(ns) => write!(f, "{} {} in namespace {}", self.verb, resource, ns),
            None => write!(f, "{} {} (cluster-wide)", self.verb, resource),
        }
    }
}

/// A permission the caller lacks, with the authorizer's reason if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPermission {
    /// The permission.
    pub permission: Permission,
    /// `status.reason` / `status.evaluationError` of the review.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A platform controller that still runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningController {
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub name: String,
    /// UID, so stopping acts on exactly this Deployment.
    pub uid: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
}

/// Result of stopping controllers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    /// Controllers scaled to zero whose pods are gone.
    pub stopped: Vec<String>,
    /// Controllers that could not be stopped in time, with why.
    pub not_stopped: Vec<(String, String)>,
}

impl StopReport {
    /// Whether every controller stopped.
    pub fn all_stopped(&self) -> bool {
        self.not_stopped.is_empty()
    }
}

/// Errors of preflight checks.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// An access review could not be created.
    #[error("failed to review access for {permission}")]
    AccessReview {
        /// The permission being reviewed.
        permission: Permission,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// A controller Deployment could not be read.
    #[error("failed to read deployment {namespace}/{name}")]
    ReadController {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// The verbs the executor sends for an operation on its target (a read
/// before every change, for the UID precondition and conflict re-reads),
/// and the subresource verb, if any. The generated ClusterRole
/// ([`crate::rbac`]) grants these on the kinds the planner targets.
pub fn operation_verbs(
    operation: &Operation,
) -> (
    &'static [&'static str],
    Option<(&'static str, &'static str)>,
) {
    match operation {
        Operation::Delete { .. } => (&["get", "delete"], None),
        Operation::StripMetadata { .. }
        | Operation::DisableConversionWebhook
        | Operation::RewriteHelmRecord { .. } => (&["get", "patch"], None),
        Operation::StripFinalizersThenDelete { .. } => (&["get", "patch", "delete"], None),
        // The API server deletes the object with its CRD: no delete of ours.
        Operation::RemovedWithCrd { .. } => (&["get", "patch"], None),
        Operation::FinalizeNamespaceIfStuck => (&["get"], Some(("update", "finalize"))),
    }
}

/// Every read discovery (and so `plan`, the backup and `verify`) makes with
/// `profile` on a cluster serving `inventory.resource_types`: `list` across
/// all namespaces on every listable served type (kept objects are found by
/// scanning every type; the backup lists every namespaced type in the
/// namespaces the plan deletes), `get` on the profile's controller
/// Deployments. Reviewed before any change, so a role lacking a read stops
/// the run naming it instead of leaving a blind spot in the plan.
pub fn discovery_permissions(profile: &Profile, inventory: &Inventory) -> Vec<Permission> {
    let mut out: BTreeSet<Permission> = BTreeSet::new();
    for rt in &inventory.resource_types {
        // Types the built-in table does not know (CRDs, aggregated APIs)
        // are listed like any other.
        if crate::rbac::builtin::is_listable(&rt.group, &rt.plural) {
            out.insert(Permission {
                verb: "list".into(),
                group: rt.group.clone(),
                resource: rt.plural.clone(),
                subresource: None,
                namespace: None,
            });
        }
    }
    for c in &profile.controllers {
        out.insert(Permission {
            verb: "get".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: None,
            namespace: Some(c.namespace.clone()),
        });
    }
    out.into_iter().collect()
}

/// Everything a run of `plan` needs: discovery's reads and the plan's changes.
pub fn run_permissions(profile: &Profile, inventory: &Inventory, plan: &Plan) -> Vec<Permission> {
    let mut out: BTreeSet<Permission> = discovery_permissions(profile, inventory)
        .into_iter()
        .collect();
    out.extend(required_permissions(plan));
    out.into_iter().collect()
}

/// Every permission running `plan` needs, deduplicated: the verbs of each
/// operation (including the re-reads the executor does on conflicts) and
/// `list` for the types whose deletion is waited on.
pub fn required_permissions(plan: &Plan) -> Vec<Permission> {
    let mut out: BTreeSet<Permission> = BTreeSet::new();
    for (phase, action) in plan.actions() {
        let t = &action.target;
        let namespace = if t.resource.namespaced {
            t.namespace.clone()
        } else {
            None
        };
        let perm = |verb: &str, sub: Option<&str>| Permission {
            verb: verb.to_string(),
            group: t.resource.group.clone(),
            resource: t.resource.plural.clone(),
            subresource: sub.map(str::to_string),
            namespace: namespace.clone(),
        };
        let (verbs, subresource) = operation_verbs(&action.operation);
        out.extend(verbs.iter().map(|v| perm(v, None)));
        if let Some((verb, sub)) = subresource {
            out.insert(perm(verb, Some(sub)));
        }
        if phase.waits_for_deletion() && action.operation.sends_delete() {
            out.insert(Permission {
                verb: "list".into(),
                namespace: None,
                ..perm("list", None)
            });
        }
    }
    out.into_iter().collect()
}

/// Asks the API server which of `permissions` the caller lacks: the same
/// answer as one access review each, proven with far fewer requests (see
/// [`crate::access_review`]).
pub async fn missing_permissions(
    client: &Client,
    permissions: &[Permission],
) -> Result<Vec<MissingPermission>, PreflightError> {
    crate::access_review::missing_permissions(client, permissions).await
}

/// [`running_controllers`] as the discovery just made read them (it reads
/// the same Deployments by name), or `None` when a read of one failed there:
/// then ask the server with [`running_controllers`]. Pure.
pub fn running_controllers_in(
    profile: &Profile,
    inventory: &Inventory,
) -> Option<Vec<RunningController>> {
    let deployments = types::deployment().qualified_plural();
    if inventory.issues.iter().any(
        |i| matches!(i, DiscoveryIssue::ListFailed { resource, .. } if *resource == deployments),
    ) {
        return None;
    }
    let mut running = Vec::new();
    for c in &profile.controllers {
        let Some(d) = inventory.controllers.iter().find(|d| {
            d.metadata.namespace.as_deref() == Some(c.namespace.as_str())
                && d.metadata.name.as_deref() == Some(c.name.as_str())
        }) else {
            continue;
        };
        let int = |pointer: &str| {
            d.data
                .pointer(pointer)
                .and_then(|v| v.as_i64())
                .and_then(|v| i32::try_from(v).ok())
        };
        let replicas = int("/spec/replicas").unwrap_or(1);
        if replicas > 0 {
            running.push(RunningController {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
                uid: d.metadata.uid.clone().unwrap_or_default(),
                replicas,
                ready_replicas: int("/status/readyReplicas").unwrap_or(0),
            });
        }
    }
    Some(running)
}

/// The profile's controllers that exist with `spec.replicas > 0`.
pub async fn running_controllers(
    client: &Client,
    profile: &Profile,
) -> Result<Vec<RunningController>, PreflightError> {
    let mut running = Vec::new();
    for c in &profile.controllers {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &c.namespace);
        let what = format!("get deployment {}/{}", c.namespace, c.name);
        let found = retry::with_retry(&RetryPolicy::standard(), &what, || api.get_opt(&c.name))
            .await
            .map_err(|source| PreflightError::ReadController {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
                source,
            })?;
        let Some(d) = found else { continue };
        let replicas = d.spec.replicas.unwrap_or(1);
        if replicas > 0 {
            running.push(RunningController {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
                uid: d.metadata.uid.clone().unwrap_or_default(),
                replicas,
                ready_replicas: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
            });
        }
    }
    Ok(running)
}

/// Splits running controllers into those the plan stops itself (it deletes
/// their Deployment, same UID, in the foreground in the Helm workloads phase,
/// before any finalizer, custom resource or CRD is touched) and those that
/// must be scaled down before the plan runs. Pure.
pub fn stopped_by_plan(
    plan: &Plan,
    running: Vec<RunningController>,
) -> (Vec<RunningController>, Vec<RunningController>) {
    let deleted_first: BTreeSet<&str> = plan
        .phase(PhaseId::HelmWorkloads)
        .into_iter()
        .flat_map(|p| &p.actions)
        .filter(|a| a.stops_a_workload())
        .map(|a| a.target.uid.as_str())
        .collect();
    running
        .into_iter()
        .partition(|c| deleted_first.contains(c.uid.as_str()))
}

/// Scales each controller to zero (a JSON patch bound to its UID) and waits,
/// up to `timeout` in total, until the pods its selector matches are gone.
pub async fn stop_controllers(
    client: &Client,
    controllers: &[RunningController],
    timeout: Duration,
) -> StopReport {
    let started = Instant::now();
    let mut report = StopReport::default();
    let mut scaled: Vec<(&RunningController, String)> = Vec::new();
    for c in controllers {
        let key = format!("{}/{}", c.namespace, c.name);
        let api: Api<Deployment> = Api::namespaced(client.clone(), &c.namespace);
        let patch = match serde_json::from_value::<json_patch::Patch>(json!([
            {"op": "test", "path": "/metadata/uid", "value": c.uid},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
        ])) {
            Ok(p) => Patch::Json::<()>(p),
            Err(err) => {
                report
                    .not_stopped
                    .push((key, format!("internal: bad patch: {err}")));
                continue;
            }
        };
        let what = format!("scale {key} to zero");
        let params = PatchParams {
            field_manager: Some(crate::execute::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match retry::with_retry(&RetryPolicy::standard(), &what, || {
            api.patch(&c.name, &params, &patch)
        })
        .await
        {
            Ok(d) => {
                let selector = d
                    .spec
                    .selector
                    .match_labels
                    .map(|m| {
                        m.into_iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                scaled.push((c, selector));
            }
            Err(err) if retry::is_not_found(&err) => report.stopped.push(key),
            Err(err) => report.not_stopped.push((key, error_message(&err))),
        }
    }
    for (c, selector) in scaled {
        let key = format!("{}/{}", c.namespace, c.name);
        if selector.is_empty() {
            // Without matchLabels we cannot find its pods; scaled is the best we know.
            report.stopped.push(key);
            continue;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &c.namespace);
        let params = ListParams::default().labels(&selector);
        loop {
            match pods.list_metadata(&params).await {
                Ok(list) if list.items.is_empty() => {
                    report.stopped.push(key);
                    break;
                }
                Ok(list) if started.elapsed() >= timeout => {
                    report.not_stopped.push((
                        key,
                        format!("{} pods still present after {timeout:?}", list.items.len()),
                    ));
                    break;
                }
                Err(err) if started.elapsed() >= timeout => {
                    report.not_stopped.push((key, error_message(&err)));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    report
}

/// Scales controllers that [`stop_controllers`] scaled to zero back to their
/// replica counts (an interrupted or failed run must not leave the platform
/// half stopped). Bound to the UID like the scale-down. Returns the ones
/// that could not be restored, with why; a Deployment gone since is none of
/// them.
pub async fn restore_controllers(
    client: &Client,
    controllers: &[RunningController],
) -> Vec<(RunningController, String)> {
    let mut failed = Vec::new();
    for c in controllers {
        let api: Api<Deployment> = Api::namespaced(client.clone(), &c.namespace);
        let patch = match serde_json::from_value::<json_patch::Patch>(json!([
            {"op": "test", "path": "/metadata/uid", "value": c.uid},
            {"op": "replace", "path": "/spec/replicas", "value": c.replicas},
        ])) {
            Ok(p) => Patch::Json::<()>(p),
            Err(err) => {
                failed.push((c.clone(), format!("internal: bad patch: {err}")));
                continue;
            }
        };
        let what = format!("scale {}/{} back to {}", c.namespace, c.name, c.replicas);
        let params = PatchParams {
            field_manager: Some(crate::execute::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match retry::with_retry(&RetryPolicy::standard(), &what, || {
            api.patch(&c.name, &params, &patch)
        })
        .await
        {
            Ok(_) => {}
            Err(err) if retry::is_not_found(&err) => {}
            Err(err) => failed.push((c.clone(), error_message(&err))),
        }
    }
    failed
}

/// The kubectl command that scales `c` back, for an operator to run when
/// kubesweep could not.
pub fn scale_back_command(c: &RunningController) -> String {
    format!(
        "kubectl -n {} scale deployment/{} --replicas={}",
        c.namespace, c.name, c.replicas
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_controllers_are_read_from_the_inventory_unless_a_read_failed() {
        let profile = Profile::builtin("kubesphere").expect("builtin");
        let c = &profile.controllers[0];
        let deployment = |replicas: Option<i64>| {
            let mut d = kube::api::DynamicObject::new(&c.name, &types::deployment().api_resource())
                .within(&c.namespace)
                .data(json!({"spec": {"replicas": replicas}, "status": {"readyReplicas": 1}}));
            d.metadata.uid = Some("uid-1".into());
            d
        };
        let identity = crate::inventory::ClusterIdentity {
            kube_system_uid: "k".into(),
            server: "https://example".into(),
            context: None,
        };
        let mut inventory = Inventory::empty(identity);
        assert_eq!(running_controllers_in(&profile, &inventory), Some(vec![]));
        inventory.controllers = vec![deployment(Some(2))];
        assert_eq!(
            running_controllers_in(&profile, &inventory),
            Some(vec![RunningController {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
                uid: "uid-1".into(),
                replicas: 2,
                ready_replicas: 1,
            }])
        );
        // Scaled to zero: not running. No replicas field: the default, 1.
        inventory.controllers = vec![deployment(Some(0))];
        assert_eq!(running_controllers_in(&profile, &inventory), Some(vec![]));
        inventory.controllers = vec![deployment(None)];
        assert_eq!(
            running_controllers_in(&profile, &inventory).map(|r| r[0].replicas),
            Some(1)
        );
        // A read that failed in discovery: the caller asks the server.
        inventory.issues.push(DiscoveryIssue::ListFailed {
            resource: "deployments.apps".into(),
            namespace: Some(c.namespace.clone()),
            message: "timeout".into(),
        });
        assert_eq!(running_controllers_in(&profile, &inventory), None);
    }

    #[test]
    fn the_scale_back_command_names_namespace_deployment_and_replicas() {
        let c = RunningController {
            namespace: "kubesphere-system".into(),
            name: "ks-controller-manager".into(),
            uid: "u".into(),
            replicas: 2,
            ready_replicas: 0,
        };
        assert_eq!(
            scale_back_command(&c),
            "kubectl -n kubesphere-system scale deployment/ks-controller-manager --replicas=2"
        );
    }
    use crate::inventory::{ClusterIdentity, types};
    use crate::plan::{Action, PLAN_SCHEMA_VERSION, Phase, PlanCounts, PlanOptions, Propagation};
    use crate::resource::ObjectRef;

    fn action(resource: crate::resource::ResourceType, ns: Option<&str>, op: Operation) -> Action {
        Action {
            target: ObjectRef {
                resource,
                namespace: ns.map(str::to_string),
                name: "x".into(),
                uid: "u".into(),
                resource_version: "1".into(),
            },
            operation: op,
            reason: String::new(),
            destroys_data: false,
        }
    }

    #[test]
    fn permissions_cover_every_verb_the_executor_uses() {
        let phases = vec![
            Phase {
                id: PhaseId::ClusterLeftovers,
                actions: vec![action(
                    types::role(),
                    Some("team-a"),
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                )],
            },
            Phase {
                id: PhaseId::Namespaces,
                actions: vec![action(
                    types::namespace(),
                    None,
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                )],
            },
            Phase {
                id: PhaseId::NamespaceFinalize,
                actions: vec![action(
                    types::namespace(),
                    None,
                    Operation::FinalizeNamespaceIfStuck,
                )],
            },
        ];
        let plan = plan_of(phases);
        let perms: Vec<String> = required_permissions(&plan)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            perms,
            vec![
                "delete namespaces (cluster-wide)",
                "delete roles.rbac.authorization.k8s.io in namespace team-a",
                "get namespaces (cluster-wide)",
                "get roles.rbac.authorization.k8s.io in namespace team-a",
                "list namespaces (cluster-wide)",
                "update namespaces/finalize (cluster-wide)",
            ]
        );
    }

    fn plan_of(phases: Vec<Phase>) -> Plan {
        Plan {
            schema_version: PLAN_SCHEMA_VERSION,
            cluster: ClusterIdentity::default(),
            profile: "t".into(),
            kubesweep_version: "t".into(),
            options: PlanOptions::default(),
            counts: PlanCounts::compute(&phases, &[]),
            phases,
            findings: vec![],
            data_hazards: vec![],
        }
    }

    fn controller(uid: &str) -> RunningController {
        RunningController {
            namespace: "kubesphere-system".into(),
            name: "ks-controller-manager".into(),
            uid: uid.into(),
            replicas: 1,
            ready_replicas: 1,
        }
    }

    #[test]
    fn only_a_foreground_delete_of_the_same_deployment_first_stops_a_controller() {
        let delete = |propagation| Operation::Delete { propagation };
        let deployment = types::deployment();
        let plan = |phase, op| {
            plan_of(vec![Phase {
                id: phase,
                actions: vec![action(deployment.clone(), Some("kubesphere-system"), op)],
            }])
        };
        let first = plan(PhaseId::HelmWorkloads, delete(Propagation::Foreground));
        let (stopped, remaining) = stopped_by_plan(&first, vec![controller("u"), controller("v")]);
        assert_eq!(stopped, vec![controller("u")]);
        assert_eq!(
            remaining,
            vec![controller("v")],
            "another UID is not the planned object"
        );

        for (phase, propagation) in [
            (PhaseId::HelmWorkloads, Propagation::Background),
            (PhaseId::HelmReleases, Propagation::Foreground),
        ] {
            let later = plan(phase, delete(propagation));
            let (stopped, remaining) = stopped_by_plan(&later, vec![controller("u")]);
            assert!(stopped.is_empty(), "{phase:?} {propagation:?}");
            assert_eq!(remaining.len(), 1);
        }
    }
}
