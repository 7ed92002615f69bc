//! The safety verdict of a cleanup: given the snapshot before and after, is
//! every change one a correct cleanup may make? Foreign decoys must be
//! byte-identical (resourceVersion included); user objects and system
//! namespaces may only lose KubeSphere's labels, annotations, finalizers and
//! owner references (and so get a new resourceVersion). Anything else — a
//! deleted user namespace, a foreign finalizer gone, a changed spec — is a
//! violation, named so a failing test says what broke.

use serde_json::Value;

use crate::footprint::{Footprint, Role};
use crate::snapshot::{Change, Snapshot};

/// Domains whose keys a KubeSphere cleanup may remove from kept objects.
const PLATFORM_DOMAINS: &[&str] = &["kubesphere.io", "kubefed.io"];

/// Whether `key` (a label/annotation key, finalizer or API group) belongs to a
/// platform domain, matched on a dot boundary: `iam.kubesphere.io/x` yes,
/// `notkubesphere.io/x` and `kubesphere.io.example.com/x` no.
pub fn is_platform_key(key: &str) -> bool {
    let domain = key.split_once('/').map_or(key, |(d, _)| d);
    PLATFORM_DOMAINS
        .iter()
        .any(|p| domain == *p || domain.ends_with(&format!(".{p}")))
}

/// Whether an ownerReference points at a KubeSphere object (a KubeSphere
/// group). Not an app.k8s.io Application: one a user composed in the console
/// is the user's, and so is its reference to the user's workloads.
fn is_platform_owner(reference: &Value) -> bool {
    let api_version = reference["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    is_platform_key(group)
}

/// `before` minus the entries a cleanup may remove equals `after`.
fn only_platform_entries_removed(
    before: &Option<Value>,
    after: &Option<Value>,
    removable: impl Fn(&Value) -> bool,
) -> bool {
    let before: Vec<&Value> = before
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let after: Vec<&Value> = after
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let kept: Vec<&Value> = before.into_iter().filter(|v| !removable(v)).collect();
    kept == after
}

/// Whether a map (labels/annotations) lost only platform keys and changed nothing else.
fn only_platform_keys_removed(before: &Option<Value>, after: &Option<Value>) -> bool {
    let empty = serde_json::Map::new();
    let before = before.as_ref().and_then(Value::as_object).unwrap_or(&empty);
    let after = after.as_ref().and_then(Value::as_object).unwrap_or(&empty);
    before.iter().all(|(k, v)| {
        if is_platform_key(k) {
            !after.contains_key(k) || after.get(k) == Some(v)
        } else {
            after.get(k) == Some(v)
        }
    }) && after.keys().all(|k| before.contains_key(k))
}

/// Whether one change is allowed for an object of this role.
fn allowed(role: Role, change: &Change) -> bool {
    if role == Role::Foreign || change.path.is_empty() {
        // Foreign objects stay byte-identical; no kept object may vanish or appear.
        return false;
    }
    let path = change.path.as_str();
    if path == "metadata.resourceVersion" {
        return true;
    }
    if let Some(key) = path
        .strip_prefix("metadata.labels.")
        .or_else(|| path.strip_prefix("metadata.annotations."))
    {
        return is_platform_key(key) && change.after.is_none();
    }
    match path {
        "metadata.labels" | "metadata.annotations" => {
            only_platform_keys_removed(&change.before, &change.after)
        }
        "metadata.finalizers" => {
            only_platform_entries_removed(&change.before, &change.after, |f| {
                f.as_str().is_some_and(is_platform_key)
            })
        }
        "metadata.ownerReferences" => {
            only_platform_entries_removed(&change.before, &change.after, is_platform_owner)
        }
        _ => false,
    }
}

/// Every change between the snapshots that a correct cleanup may not make,
/// one line each. Empty means the cleanup was safe.
pub fn violations(footprint: &Footprint, before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let role_of = |object: &str| {
        footprint
            .objects
            .iter()
            .find(|o| o.key.to_string() == object)
            .map_or(Role::Foreign, |o| o.role)
    };
    before
        .changes(after)
        .into_iter()
        .filter(|change| !allowed(role_of(&change.object), change))
        .map(|change| format!("{:?} object changed: {change}", role_of(&change.object)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(path: &str, before: Option<Value>, after: Option<Value>) -> Change {
        Change {
            object: "Namespace kube-system".into(),
            path: path.into(),
            before,
            after,
        }
    }

    #[test]
    fn platform_keys_match_on_a_dot_boundary() {
        assert!(is_platform_key("kubesphere.io/workspace"));
        assert!(is_platform_key("finalizers.kubesphere.io/namespaces"));
        assert!(is_platform_key("iam.kubesphere.io"));
        assert!(!is_platform_key("notkubesphere.io/x"));
        assert!(!is_platform_key("kubesphere.io.example.com/x"));
        assert!(!is_platform_key("acme.example.com/keep"));
    }

    #[test]
    fn removing_a_platform_finalizer_is_allowed_removing_a_foreign_one_is_not() {
        let before = Some(json!([
            "kubesphere.io/cascading-deletion",
            "acme.example.com/keep"
        ]));
        assert!(allowed(
            Role::SystemNamespace,
            &change(
                "metadata.finalizers",
                before.clone(),
                Some(json!(["acme.example.com/keep"]))
            )
        ));
        assert!(!allowed(
            Role::SystemNamespace,
            &change("metadata.finalizers", before.clone(), None)
        ));
        assert!(!allowed(
            Role::SystemNamespace,
            &change(
                "metadata.finalizers",
                before,
                Some(json!(["kubesphere.io/cascading-deletion"]))
            )
        ));
    }

    #[test]
    fn foreign_objects_may_not_change_at_all() {
        assert!(!allowed(
            Role::Foreign,
            &change(
                "metadata.resourceVersion",
                Some(json!("1")),
                Some(json!("2"))
            )
        ));
        assert!(allowed(
            Role::User,
            &change(
                "metadata.resourceVersion",
                Some(json!("1")),
                Some(json!("2"))
            )
        ));
    }

    #[test]
    fn labels_other_than_the_platform_keys_must_stay() {
        assert!(allowed(
            Role::User,
            &change(
                "metadata.labels.kubesphere.io/workspace",
                Some(json!("ws")),
                None
            )
        ));
        assert!(!allowed(
            Role::User,
            &change(
                "metadata.labels.acme.example.com/team",
                Some(json!("a")),
                None
            )
        ));
        assert!(!allowed(
            Role::User,
            &change("spec.replicas", Some(json!(1)), Some(json!(0)))
        ));
        assert!(
            !allowed(Role::User, &change("", Some(json!({})), None)),
            "a kept object vanished"
        );
    }

    #[test]
    fn owner_references_only_lose_platform_owners() {
        let ws = json!({"apiVersion": "tenant.kubesphere.io/v1alpha1", "kind": "Workspace", "name": "w", "uid": "1"});
        let foreign =
            json!({"apiVersion": "acme.example.com/v1", "kind": "Thing", "name": "t", "uid": "2"});
        let before = Some(json!([ws, foreign.clone()]));
        assert!(allowed(
            Role::User,
            &change(
                "metadata.ownerReferences",
                before.clone(),
                Some(json!([foreign]))
            )
        ));
        assert!(!allowed(
            Role::User,
            &change("metadata.ownerReferences", before, None)
        ));
    }
}
