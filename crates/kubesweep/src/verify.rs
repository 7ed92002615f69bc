//! Verification: discover again with the same profile and plan again; every
//! action the new plan still contains is a leftover, explained from the live
//! object (finalizers, deletionTimestamp, namespace and CRD conditions).

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::discover::{self, DiscoverError};
use crate::inventory::{ClusterIdentity, DiscoveryIssue, Inventory};
use crate::plan::{self, Finding, PhaseId, PlanOptions};
use crate::profile::Profile;
use crate::resource::ObjectRef;

/// Something of the platform still in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// The object.
    pub target: ObjectRef,
    /// The phase that would act on it.
    pub phase: PhaseId,
    /// What a new run would do (`delete`, `strip metadata`...).
    pub operation: String,
    /// Why the profile says it is the platform's.
    pub ownership: String,
    /// Why it is still there, read from the object.
    pub why: Vec<String>,
    /// Who wrote it, from its `managedFields`, most recent first: a
    /// platform controller that still runs shows up here by its field
    /// manager name, e.g. re-creating what a run deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<Writer>,
}

/// One writer of an object: a `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    /// The field manager (`ks-controller-manager`, `kubectl`, `kubesweep`...).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// When it last wrote (the API server keeps seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The subresource written (`status`, `finalize`), if not the object itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

impl Leftover {
    /// The writers other than kubesweep itself that wrote this object at or
    /// after `since`, most recent first: during a run, those are who keeps
    /// changing it. Writes of a subresource do not count: what a run
    /// removes (finalizers, labels, the object) is written through the
    /// object itself, while Kubernetes' own controllers report progress
    /// through `status` (the namespace controller on a namespace being
    /// deleted, for one).
    pub fn written_since(&self, since: Timestamp) -> Vec<&Writer> {
        // managedFields times have whole seconds.
        let since = since.as_second();
        self.writers
            .iter()
            .filter(|w| w.manager != crate::execute::FIELD_MANAGER)
            .filter(|w| w.subresource.as_deref().unwrap_or_default().is_empty())
            .filter(|w| w.time.as_ref().is_some_and(|t| t.0.as_second() >= since))
            .collect()
    }
}

/// The result of a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The cluster verified.
    pub cluster: ClusterIdentity,
    /// Everything the platform still has in the cluster.
    pub leftovers: Vec<Leftover>,
    /// What discovery could not see (a list that failed hides possible leftovers).
    pub issues: Vec<DiscoveryIssue>,
    /// The new plan's findings (running controllers, terminating namespaces...).
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Nothing left, and nothing that could hide a leftover (no failed list).
    /// An unavailable API group alone does not make a cluster unclean: it may
    /// be foreign; it is reported in `issues`.
    pub fn is_clean(&self) -> bool {
        self.leftovers.is_empty()
            && !self
                .issues
                .iter()
                .any(|i| matches!(i, DiscoveryIssue::ListFailed { .. }))
    }
}

/// Errors of a verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Discovery failed as a whole.
    #[error("failed to discover the cluster for verification")]
    Discover(#[from] DiscoverError),
}

/// Discovers again and reports what is left.
pub async fn verify(
    client: &Client,
    profile: &Profile,
    cluster: &ClusterIdentity,
    options: &PlanOptions,
) -> Result<VerifyReport, VerifyError> {
    let inventory = discover::discover(client, profile, cluster).await?;
    Ok(verify_inventory(profile, &inventory, options))
}

/// The pure half of [`verify`]: plan on an inventory and explain every action.
pub fn verify_inventory(
    profile: &Profile,
    inventory: &Inventory,
    options: &PlanOptions,
) -> VerifyReport {
    let plan = plan::plan(profile, inventory, options);
    let objects = index_by_uid(inventory);
    let leftovers = plan
        .actions()
        .map(|(phase, action)| {
            let object = objects.get(action.target.uid.as_str());
            let mut why = object.map(|o| explain(o)).unwrap_or_default();
            if let Some(held) = object.and_then(|o| held_by_others(profile, o)) {
                why.push(held);
            }
            Leftover {
                target: action.target.clone(),
                phase,
                operation: action.operation.verb().to_string(),
                ownership: action.reason.clone(),
                why,
                writers: object.map(|o| writers(o)).unwrap_or_default(),
            }
        })
        .collect();
    VerifyReport {
        cluster: inventory.cluster.clone(),
        leftovers,
        issues: inventory.issues.clone(),
        findings: plan.findings,
    }
}

/// For an object being deleted: the finalizers that hold it and are not
/// the platform's. kubesweep never removes them; their owner must.
fn held_by_others(profile: &Profile, object: &DynamicObject) -> Option<String> {
    object.metadata.deletion_timestamp.as_ref()?;
    let foreign: Vec<&str> = object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| !profile.is_platform_finalizer(f))
        .map(String::as_str)
        .collect();
    (!foreign.is_empty()).then(|| {
        format!(
            "held by finalizer(s) not the platform's, which kubesweep does not remove (their owner must): {}",
            foreign.join(", ")
        )
    })
}

/// The object's `managedFields` writers, most recent first.
fn writers(object: &DynamicObject) -> Vec<Writer> {
    let mut out: Vec<Writer> = object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| Writer {
            manager: m.manager.clone().unwrap_or_default(),
            operation: m.operation.clone().unwrap_or_default(),
            time: m.time.clone(),
            subresource: m.subresource.clone(),
        })
        .collect();
    out.sort_by(|a, b| b.time.cmp(&a.time));
    out
}

fn index_by_uid(inventory: &Inventory) -> HashMap<&str, &DynamicObject> {
    let mut index = HashMap::new();
    for (_, object) in inventory.objects() {
        if let Some(uid) = object.metadata.uid.as_deref() {
            index.entry(uid).or_insert(object);
        }
    }
    index
}

/// Why an object is still there, from what it says about itself: deletion in
/// progress, finalizers (metadata and, for namespaces, spec), and the
/// conditions that explain stuck deletions (namespace `Namespace*`
/// conditions, CRD `Terminating`/`InstanceDeletion*`, an APIService that is
/// not `Available`).
pub fn explain(object: &DynamicObject) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(ts) = &object.metadata.deletion_timestamp {
        why.push(format!("being deleted since {}", ts.0));
    }
    if let Some(f) = object
        .metadata
        .finalizers
        .as_ref()
        .filter(|f| !f.is_empty())
    {
        why.push(format!("finalizers: {}", f.join(", ")));
    }
    let spec_finalizers: Vec<&str> = object
        .data
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !spec_finalizers.is_empty() {
        why.push(format!("spec.finalizers: {}", spec_finalizers.join(", ")));
    }
    for c in object
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let status = c.get("status").and_then(Value::as_str).unwrap_or_default();
        let message = c.get("message").and_then(Value::as_str).unwrap_or_default();
        let telling = match kind {
            k if k.starts_with("Namespace") => status == "True",
            "Terminating" | "InstanceDeletionInProgress" | "InstanceDeletionFailed" => {
                status == "True"
            }
            "InstanceDeletionCheck" => status == "False",
            "Available" => status == "False",
            _ => false,
        };
        if telling {
            why.push(if message.is_empty() {
                format!("{kind}={status}")
            } else {
                format!("{kind}: {message}")
            });
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writers_during_a_run_leave_out_kubesweep_subresources_and_earlier_writes() {
        let writer = |manager: &str, time: &str, subresource: Option<&str>| Writer {
            manager: manager.into(),
            operation: "Update".into(),
            time: Some(Time(time.parse().expect("time"))),
            subresource: subresource.map(Into::into),
        };
        let leftover = Leftover {
            target: ObjectRef {
                resource: crate::inventory::types::namespace(),
                namespace: None,
                name: "p".into(),
                uid: "u".into(),
                resource_version: "1".into(),
            },
            phase: PhaseId::KeptObjects,
            operation: "strip metadata".into(),
            ownership: String::new(),
            why: vec![],
            writers: vec![
                writer("ks-controller-manager", "2026-01-01T00:00:10Z", None),
                writer(crate::execute::FIELD_MANAGER, "2026-01-01T00:00:09Z", None),
                writer(
                    "kube-controller-manager",
                    "2026-01-01T00:00:09Z",
                    Some("status"),
                ),
                writer("seed", "2026-01-01T00:00:04Z", None),
            ],
        };
        // The run started within second 5: a write in that second counts.
        let since: Timestamp = "2026-01-01T00:00:05.500Z".parse().expect("time");
        let names: Vec<&str> = leftover
            .written_since(since)
            .iter()
            .map(|w| w.manager.as_str())
            .collect();
        assert_eq!(names, ["ks-controller-manager"]);
    }

    #[test]
    fn explains_a_stuck_namespace() {
        let ns: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["kubesphere.io/cascading-deletion"]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": [
                {"type": "NamespaceContentRemaining", "status": "True", "message": "Some resources are remaining: widgets.example.io has 1 resource instances"},
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "message": "All resources successfully discovered"}
            ]}
        }))
        .expect("valid");
        let why = explain(&ns);
        assert_eq!(why.len(), 4, "{why:?}");
        assert!(why[0].starts_with("being deleted since"));
        assert_eq!(why[1], "finalizers: kubesphere.io/cascading-deletion");
        assert_eq!(why[2], "spec.finalizers: kubernetes");
        assert!(why[3].starts_with("NamespaceContentRemaining: Some resources"));
    }
}
