//! Credentials other clusters' that a backup written in clear must not hold.
//!
//! A host's `clusters.cluster.kubesphere.io` objects carry each member's
//! kubeconfig (`spec.connection.kubeconfig`, usually cluster-admin on that
//! member) and the proxy agent's token. Secrets of the cluster being cleaned
//! are backed up as they are (mode 0600, the operator's own cluster), but
//! these fields open *other* clusters: a backup that is not age-encrypted
//! leaves them out, so restoring it from a clear archive needs the members to
//! be joined again. An encrypted backup keeps them (see `take`).
//!
//! `kubectl apply` copies the whole object into an annotation, so the same
//! objects also lose `kubectl.kubernetes.io/last-applied-configuration`.

use serde_json::Value;

use super::collect::BackupObject;

/// `(group, kind, JSON pointers)` of fields holding another cluster's credentials.
const SECRET_FIELDS: &[(&str, &str, &[&str])] = &[(
    "cluster.kubesphere.io",
    "Cluster",
    &["/spec/connection/kubeconfig", "/spec/connection/token"],
)];

/// The annotation `kubectl apply` stores the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Removes the fields of [`SECRET_FIELDS`] (and the last-applied copy) from
/// `objects`; returns, per object changed, its `kind/name` and the fields removed.
pub fn redact_secret_fields(objects: &mut [BackupObject]) -> Vec<(String, Vec<String>)> {
    let mut redacted = Vec::new();
    for o in objects.iter_mut() {
        let Some((_, _, pointers)) = SECRET_FIELDS
            .iter()
            .find(|(g, k, _)| *g == o.resource.group && *k == o.resource.kind)
        else {
            continue;
        };
        let mut removed = Vec::new();
        for pointer in *pointers {
            if remove_at(&mut o.object, pointer) {
                removed.push(pointer.trim_start_matches('/').replace('/', "."));
            }
        }
        let annotations = o
            .object
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut);
        if annotations.is_some_and(|a| a.remove(LAST_APPLIED).is_some()) {
            removed.push(format!("metadata.annotations[{LAST_APPLIED}]"));
        }
        if !removed.is_empty() {
            let name = o
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            redacted.push((format!("{}/{name}", o.resource.kind), removed));
        }
    }
    redacted
}

/// Removes the field at a JSON pointer; whether it was there.
fn remove_at(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, field)) = pointer.rsplit_once('/') else {
        return false;
    };
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .is_some_and(|m| m.remove(field).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{RestoreMode, Source};
    use crate::resource::ResourceType;
    use serde_json::json;

    fn object(group: &str, kind: &str, body: Value) -> BackupObject {
        BackupObject {
            resource: ResourceType {
                group: group.into(),
                version: "v1alpha1".into(),
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
                namespaced: false,
            },
            object: body,
            operations: vec!["delete".into()],
            source: Source::PlanTarget,
            mode: RestoreMode::Recreate,
            removed: None,
        }
    }

    #[test]
    fn a_cluster_loses_its_member_credentials_and_keeps_the_rest() {
        let mut objects = vec![
            object(
                "cluster.kubesphere.io",
                "Cluster",
                json!({"metadata": {"name": "member-1", "annotations": {
                          LAST_APPLIED: "{\"spec\":{\"connection\":{\"kubeconfig\":\"c2VjcmV0\"}}}",
                          "keep": "me"}},
                       "spec": {"provider": "kubesphere",
                                "connection": {"type": "direct", "kubeconfig": "c2VjcmV0", "token": "t0k3n"}}}),
            ),
            // Same kind name in another group: not KubeSphere's, untouched.
            object(
                "cluster.x-k8s.io",
                "Cluster",
                json!({"metadata": {"name": "capi"}, "spec": {"connection": {"kubeconfig": "a2VlcA=="}}}),
            ),
        ];
        let redacted = redact_secret_fields(&mut objects);
        assert_eq!(redacted.len(), 1);
        assert_eq!(redacted[0].0, "Cluster/member-1");
        assert_eq!(
            objects[0].object,
            json!({"metadata": {"name": "member-1", "annotations": {"keep": "me"}},
                   "spec": {"provider": "kubesphere", "connection": {"type": "direct"}}})
        );
        let text = serde_json::to_string(&objects[0].object).expect("json");
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("t0k3n"),
            "{text}"
        );
        assert_eq!(
            objects[1].object["spec"]["connection"]["kubeconfig"],
            json!("a2VlcA==")
        );
    }

    #[test]
    fn a_cluster_without_credentials_is_not_reported() {
        let mut objects = vec![object(
            "cluster.kubesphere.io",
            "Cluster",
            json!({"metadata": {"name": "host"}, "spec": {"connection": {"type": "proxy"}}}),
        )];
        assert!(redact_secret_fields(&mut objects).is_empty());
    }
}
