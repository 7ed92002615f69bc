//! A plan action as the kubectl calls a per-object script makes for it.
//! Metadata that is removed by value (finalizers, owner references) needs
//! the object first, so those actions are a `get` followed by a patch the
//! caller computes with [`metadata_patch`]; everything else is fixed
//! arguments. Pure.

use kubesweep::plan::{Action, Operation, Propagation};
use kubesweep::resource::ObjectRef;
use serde_json::{Map, Value, json};

/// What to run for one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run kubectl with these arguments.
    Run(Vec<String>),
    /// `kubectl get -o json` the target, then patch it with
    /// [`metadata_patch`] of what was read.
    GetThenPatch {
        /// The `get` arguments.
        get: Vec<String>,
        /// The patch arguments without the patch body (`-p` comes last).
        patch: Vec<String>,
    },
}

/// `plural.version.group`: the exact resource, whatever else shares the
/// plural; the core group's plural alone (kubectl resolves it first).
fn resource_arg(target: &ObjectRef) -> String {
    let r = &target.resource;
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}.{}", r.plural, r.version, r.group)
    }
}

fn base(verb: &str, target: &ObjectRef) -> Vec<String> {
    let mut args = vec![verb.to_owned(), resource_arg(target), target.name.clone()];
    if let Some(ns) = &target.namespace {
        args.extend(["-n".to_owned(), ns.clone()]);
    }
    args
}

fn delete(target: &ObjectRef, propagation: Propagation) -> Vec<String> {
    let cascade = match propagation {
        Propagation::Orphan => "orphan",
        Propagation::Background => "background",
        Propagation::Foreground => "foreground",
    };
    let mut args = base("delete", target);
    // kubectl's default: wait until the object is gone, as the hook does.
    args.extend([
        format!("--cascade={cascade}"),
        "--ignore-not-found".into(),
        "--wait=true".into(),
        "--timeout=180s".into(),
    ]);
    args
}

fn get(target: &ObjectRef) -> Vec<String> {
    let mut args = base("get", target);
    args.extend(["-o".into(), "json".into(), "--ignore-not-found".into()]);
    args
}

fn patch(target: &ObjectRef) -> Vec<String> {
    let mut args = base("patch", target);
    args.push("--type=merge".into());
    args
}

/// The steps for `action`, or `None` for operations a per-object script
/// does not do (the last-resort namespace finalize, which kubesweep itself
/// only runs on a namespace still stuck; Helm record rewrites).
pub fn steps(action: &Action) -> Option<Vec<Step>> {
    let target = &action.target;
    let steps = match &action.operation {
        Operation::Delete { propagation } => vec![Step::Run(delete(target, *propagation))],
        Operation::StripFinalizersThenDelete {
            finalizers,
            propagation,
        } => {
            let mut steps = Vec::new();
            if !finalizers.is_empty() {
                steps.push(Step::GetThenPatch {
                    get: get(target),
                    patch: patch(target),
                });
            }
            steps.push(Step::Run(delete(target, *propagation)));
            steps
        }
        // A per-object script deletes every object by name, whatever the
        // plan leaves to the CRD's deletion.
        Operation::RemovedWithCrd { finalizers, .. } => {
            let mut steps = Vec::new();
            if !finalizers.is_empty() {
                steps.push(Step::GetThenPatch {
                    get: get(target),
                    patch: patch(target),
                });
            }
            steps.push(Step::Run(delete(target, Propagation::Background)));
            steps
        }
        Operation::StripMetadata { .. } => vec![Step::GetThenPatch {
            get: get(target),
            patch: patch(target),
        }],
        Operation::DisableConversionWebhook => {
            let mut args = patch(target);
            args.extend([
                "-p".into(),
                json!({"spec": {"conversion": {"strategy": "None"}}}).to_string(),
            ]);
            vec![Step::Run(args)]
        }
        Operation::FinalizeNamespaceIfStuck | Operation::RewriteHelmRecord { .. } => return None,
    };
    Some(steps)
}

/// The merge patch that removes what `operation` removes from `object` (as
/// read by `kubectl get -o json`); `None` when nothing is left to remove.
pub fn metadata_patch(operation: &Operation, object: &Value) -> Option<Value> {
    let (labels, annotations, finalizers, owner_uids): (
        &[String],
        &[String],
        &[String],
        &[String],
    ) = match operation {
        Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        } => (labels, annotations, finalizers, owner_reference_uids),
        Operation::StripFinalizersThenDelete { finalizers, .. }
        | Operation::RemovedWithCrd { finalizers, .. } => (&[], &[], finalizers, &[]),
        _ => return None,
    };
    let meta = object.get("metadata")?;
    let mut out = Map::new();
    for (field, keys) in [("labels", labels), ("annotations", annotations)] {
        let present: Map<String, Value> = keys
            .iter()
            .filter(|k| meta.pointer(&format!("/{field}/{}", escape(k))).is_some())
            .map(|k| (k.clone(), Value::Null))
            .collect();
        if !present.is_empty() {
            out.insert(field.into(), Value::Object(present));
        }
    }
    let list = |field: &str| {
        meta.get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let current = list("finalizers");
    let kept: Vec<Value> = current
        .iter()
        .filter(|f| {
            !f.as_str()
                .is_some_and(|f| finalizers.iter().any(|x| x == f))
        })
        .cloned()
        .collect();
    if kept.len() != current.len() {
        out.insert("finalizers".into(), Value::Array(kept));
    }
    let current = list("ownerReferences");
    let kept: Vec<Value> = current
        .iter()
        .filter(|o| {
            !o.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| owner_uids.iter().any(|x| x == u))
        })
        .cloned()
        .collect();
    if kept.len() != current.len() {
        out.insert("ownerReferences".into(), Value::Array(kept));
    }
    (!out.is_empty()).then(|| json!({ "metadata": out }))
}

/// JSON pointer escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesweep::resource::ResourceType;

    fn action(group: &str, namespace: Option<&str>, operation: Operation) -> Action {
        Action {
            target: ObjectRef {
                resource: ResourceType {
                    group: group.into(),
                    version: "v1alpha1".into(),
                    kind: "Thing".into(),
                    plural: "things".into(),
                    namespaced: namespace.is_some(),
                },
                namespace: namespace.map(str::to_owned),
                name: "x".into(),
                uid: "u".into(),
                resource_version: "1".into(),
            },
            operation,
            reason: String::new(),
            destroys_data: false,
        }
    }

    #[test]
    fn deletes_name_the_exact_resource_and_wait() {
        let a = action(
            "tenant.kubesphere.io",
            None,
            Operation::StripFinalizersThenDelete {
                finalizers: vec!["finalizers.tenant.kubesphere.io".into()],
                propagation: Propagation::Orphan,
            },
        );
        let strip_then_delete = steps(&a).expect("steps");
        assert_eq!(strip_then_delete.len(), 2);
        assert!(
            matches!(&strip_then_delete[0], Step::GetThenPatch { get, .. } if get[1] == "things.v1alpha1.tenant.kubesphere.io")
        );
        let Step::Run(delete) = &strip_then_delete[1] else {
            panic!("{strip_then_delete:?}")
        };
        assert_eq!(
            delete.join(" "),
            "delete things.v1alpha1.tenant.kubesphere.io x --cascade=orphan --ignore-not-found --wait=true --timeout=180s"
        );
        let core = action(
            "",
            Some("ns"),
            Operation::Delete {
                propagation: Propagation::Background,
            },
        );
        let core_steps = steps(&core).expect("steps");
        let [Step::Run(args)] = core_steps.as_slice() else {
            panic!("one run: {core_steps:?}");
        };
        assert_eq!(&args[..5], ["delete", "things", "x", "-n", "ns"]);
        assert!(steps(&action("", None, Operation::FinalizeNamespaceIfStuck)).is_none());
    }

    #[test]
    fn metadata_patch_removes_only_what_the_plan_names() {
        let op = Operation::StripMetadata {
            labels: vec!["kubesphere.io/workspace".into(), "absent".into()],
            annotations: vec!["a/b".into()],
            finalizers: vec!["finalizers.kubesphere.io/namespaces".into()],
            owner_reference_uids: vec!["ws-uid".into()],
        };
        let object = json!({"metadata": {
            "labels": {"kubesphere.io/workspace": "w", "team": "t"},
            "annotations": {"a/b": "1", "keep": "2"},
            "finalizers": ["finalizers.kubesphere.io/namespaces", "acme.io/guard"],
            "ownerReferences": [{"uid": "ws-uid"}, {"uid": "other"}],
        }});
        assert_eq!(
            metadata_patch(&op, &object),
            Some(json!({"metadata": {
                "labels": {"kubesphere.io/workspace": null},
                "annotations": {"a/b": null},
                "finalizers": ["acme.io/guard"],
                "ownerReferences": [{"uid": "other"}],
            }}))
        );
        let clean = json!({"metadata": {"labels": {"team": "t"}}});
        assert_eq!(metadata_patch(&op, &clean), None);
    }
}
