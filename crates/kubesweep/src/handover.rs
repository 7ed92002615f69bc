//! Hook mode's hand-over to Helm: keeping the records of the release Helm is
//! uninstalling (the one whose post-delete hook runs kubesweep) while their
//! namespace is deleted.
//!
//! Helm runs the post-delete hooks, then purges the release's records
//! (`Releases.Delete`: a Get, then a Delete; a record already gone makes
//! `helm uninstall` fail). The issue also wants the namespace holding them
//! (`kubesphere-system` for ks-core) gone after a successful uninstall. So
//! the namespace is deleted while a ValidatingAdmissionPolicy keeps its
//! *namespace controller* from deleting the records:
//!
//! - the namespace controller empties a namespace with DeleteCollection per
//!   resource. The API server admits each item of a DeleteCollection with
//!   the item as `oldObject` but with the request's empty name
//!   (`AdmissionToValidateObjectDeleteFunc` in k8s.io/apiserver), so the
//!   policy matches records by `oldObject.metadata.name` and tells the
//!   controller apart by `request.name == ""` (a collection delete) or by
//!   its user name (`system:serviceaccount:kube-system:namespace-controller`
//!   with `--use-service-account-credentials`, else
//!   `system:kube-controller-manager`). Helm deletes each record by name, as
//!   its own user, and passes;
//! - the policy and its binding carry an ownerReference to the namespace
//!   (its UID): once Helm has purged the records, the controller's next
//!   retry (exponential backoff, at most 60 s apart) finds the namespace
//!   empty and finalizes it, and the garbage collector deletes both.
//!
//! A DeleteCollection stops at its first refused item, so objects of the
//! records' kind whose names sort after them also wait for Helm's purge.
//! With `helm uninstall --keep-history` Helm keeps the records: the
//! namespace then stays Terminating with the policy until someone deletes
//! the records (`kubectl delete secret -n NS NAME...`).
//!
//! The pure part builds the two objects; [`protect`] creates them
//! (idempotently, bound to the namespace's UID) and waits until the API
//! server enforces them, proven by a dry-run collection delete being denied.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

/// User names the namespace controller deletes as: with
/// `--use-service-account-credentials` (kubeadm and most distributions), and
/// without it.
pub const NAMESPACE_CONTROLLER_USERS: [&str; 2] = [
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
];

/// Records to keep from the namespace controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldRecords {
    /// `namespace/name` of the release.
    pub release: String,
    /// Their namespace (deleted by the plan).
    pub namespace: String,
    /// UID of that namespace: the owner of the policy and its binding.
    pub namespace_uid: String,
    /// `secrets` or `configmaps`.
    pub resource: String,
    /// Record names.
    pub records: Vec<String>,
}

impl HeldRecords {
    /// Name of the policy and of its binding.
    pub fn policy_name(&self) -> String {
        format!("kubesweep-keep-helm-records-{}", self.namespace)
    }
}

/// Errors of [`protect`].
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// A request failed.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// An object of that name exists and is not bound to this namespace.
    #[error(
        "{kind} {name} exists but is not owned by namespace {namespace} (uid {uid}); delete it or let its owner go"
    )]
    Foreign {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Namespace.
        namespace: String,
        /// Its expected owner UID.
        uid: String,
    },
    /// The API server did not enforce the policy in time.
    #[error(
        "the API server does not enforce ValidatingAdmissionPolicy {name} after {}s (a dry-run collection delete of the records still passes)",
        after.as_secs()
    )]
    NotEnforced {
        /// Policy name.
        name: String,
        /// How long kubesweep waited.
        after: Duration,
    },
}

/// The CEL expression that admits a delete: anything but a held record, or
/// a held record deleted by name by someone other than the namespace
/// controller (Helm's purge). A collection delete's items come with an
/// empty name, which the API server leaves out of `request` altogether
/// (`request.name` alone fails with "no such key: name", which the policy's
/// `Fail` would also deny, but as an error in the namespace's conditions),
/// hence `has(...)` first.
pub fn validation_expression(records: &[String]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    format!(
        "!(oldObject.metadata.name in [{}]) || (has(request.name) && request.name != '' && !(request.userInfo.username in [{}]))",
        list(&records),
        list(&NAMESPACE_CONTROLLER_USERS)
    )
}

fn owner_and_labels(held: &HeldRecords) -> Value {
    json!({
        "name": held.policy_name(),
        "labels": {"app.kubernetes.io/managed-by": "kubesweep"},
        "annotations": {"kubesweep.io/release": held.release},
        "ownerReferences": [{
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": held.namespace,
            "uid": held.namespace_uid,
        }],
    })
}

/// The policy (pure).
pub fn policy(held: &HeldRecords) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": owner_and_labels(held),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": held.namespace}},
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": [held.resource],
                    "operations": ["DELETE"],
                }],
            },
            "validations": [{
                "expression": validation_expression(&held.records),
                "message": format!(
                    "kept for Helm: release {} is being uninstalled and Helm purges its records itself (kubesweep hook mode)",
                    held.release
                ),
            }],
        },
    })
}

/// The policy's binding (pure).
pub fn binding(held: &HeldRecords) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": owner_and_labels(held),
        "spec": {
            "policyName": held.policy_name(),
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": held.namespace}},
            },
        },
    })
}

/// What [`protect`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    /// `(kind, name, uid, created)` of the policy and the binding;
    /// `created` is false when it already existed (a re-run).
    pub objects: Vec<(&'static str, String, String, bool)>,
}

/// Creates the policy and binding (or finds them, owned by the same
/// namespace UID), then waits up to `timeout` until the API server denies a
/// dry-run collection delete of the first record: from then on the
/// namespace controller cannot take the records.
pub async fn protect(
    client: &Client,
    held: &HeldRecords,
    timeout: Duration,
) -> Result<Protected, HandoverError> {
    let mut out = Protected::default();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let name = held.policy_name();
    let (uid, created) = create_owned(&policies, policy(held), held).await?;
    out.objects
        .push(("ValidatingAdmissionPolicy", name.clone(), uid, created));
    let (uid, created) = create_owned(&bindings, binding(held), held).await?;
    out.objects.push((
        "ValidatingAdmissionPolicyBinding",
        name.clone(),
        uid,
        created,
    ));
    wait_enforced(client, held, timeout).await?;
    Ok(out)
}

async fn create_owned<K>(
    api: &Api<K>,
    object: Value,
    held: &HeldRecords,
) -> Result<(String, bool), HandoverError>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let kind = K::kind(&()).into_owned();
    let kind: &'static str = if kind == "ValidatingAdmissionPolicy" {
        "ValidatingAdmissionPolicy"
    } else {
        "ValidatingAdmissionPolicyBinding"
    };
    let name = held.policy_name();
    let typed: K = serde_json::from_value(object).map_err(|e| HandoverError::Api {
        what: format!("build {kind} {name}"),
        source: kube::Error::SerdeError(e),
    })?;
    let params = PostParams {
        field_manager: Some(crate::execute::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let existing = match api.create(&params, &typed).await {
        Ok(created) => return Ok((created.meta().uid.clone().unwrap_or_default(), true)),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            api.get(&name).await.map_err(|source| HandoverError::Api {
                what: format!("get {kind} {name}"),
                source,
            })?
        }
        Err(source) => {
            return Err(HandoverError::Api {
                what: format!("create {kind} {name}"),
                source,
            });
        }
    };
    let owned = existing
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Namespace" && o.uid == held.namespace_uid);
    if !owned {
        return Err(HandoverError::Foreign {
            kind,
            name,
            namespace: held.namespace.clone(),
            uid: held.namespace_uid.clone(),
        });
    }
    Ok((existing.meta().uid.clone().unwrap_or_default(), false))
}

/// Polls with a dry-run DeleteCollection of the first record (changes
/// nothing) until the policy denies it.
async fn wait_enforced(
    client: &Client,
    held: &HeldRecords,
    timeout: Duration,
) -> Result<(), HandoverError> {
    let Some(first) = held.records.first() else {
        return Ok(());
    };
    let (kind, plural) = if held.resource == "configmaps" {
        ("ConfigMap", "configmaps")
    } else {
        ("Secret", "secrets")
    };
    let resource = crate::resource::ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced: true,
    };
    let api: Api<DynamicObject> =
        crate::discover::dynamic_api(client, &resource, Some(&held.namespace));
    let list = ListParams::default().fields(&format!("metadata.name={first}"));
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let started = tokio::time::Instant::now();
    loop {
        match api.delete_collection(&dry_run, &list).await {
            Err(kube::Error::Api(status)) if status.message.contains(&held.policy_name()) => {
                return Ok(());
            }
            // Still admitted (the policy is not enforced yet): try again.
            Ok(_) => {}
            // Anything else (the authorizer's refusal, a broken
            // connection) will not change by waiting.
            Err(source) => {
                return Err(HandoverError::Api {
                    what: format!(
                        "dry-run collection delete of {} {}/{first}",
                        held.resource, held.namespace
                    ),
                    source,
                });
            }
        }
        if started.elapsed() >= timeout {
            return Err(HandoverError::NotEnforced {
                name: held.policy_name(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> HeldRecords {
        HeldRecords {
            release: "kubesphere-system/ks-core".into(),
            namespace: "kubesphere-system".into(),
            namespace_uid: "u-1".into(),
            resource: "secrets".into(),
            records: vec![
                "sh.helm.release.v1.ks-core.v1".into(),
                "sh.helm.release.v1.ks-core.v2".into(),
            ],
        }
    }

    #[test]
    fn policy_denies_only_the_records_to_the_namespace_controller() {
        let e = validation_expression(&held().records);
        assert_eq!(
            e,
            "!(oldObject.metadata.name in ['sh.helm.release.v1.ks-core.v1', 'sh.helm.release.v1.ks-core.v2']) \
             || (has(request.name) && request.name != '' && !(request.userInfo.username in \
             ['system:serviceaccount:kube-system:namespace-controller', 'system:kube-controller-manager']))"
        );
        let p = policy(&held());
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            p["spec"]["matchConstraints"]["resourceRules"][0]["operations"][0],
            "DELETE"
        );
        let b = binding(&held());
        assert_eq!(b["spec"]["policyName"], held().policy_name());
        assert_eq!(b["spec"]["validationActions"][0], "Deny");
        // Both parse as the typed objects the API server takes.
        let _: ValidatingAdmissionPolicy = serde_json::from_value(p).expect("policy");
        let _: ValidatingAdmissionPolicyBinding = serde_json::from_value(b).expect("binding");
    }
}
