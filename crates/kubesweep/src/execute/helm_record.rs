//! The executor's rewrite of a kept Helm release record: read it (bound to
//! the planned UID), drop the documents of removed kinds from its manifest
//! (pure, in [`crate::helm::rewrite_release`]) and write only its `release`
//! value back with a JSON patch that tests the UID and resourceVersion, so a
//! concurrent `helm upgrade` is never overwritten: on a conflict the record
//! is read again and the rewrite recomputed.

use std::collections::BTreeSet;

use base64::Engine;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use super::ops::{Ctx, MAX_PATCH_ROUNDS, Patched, read_bound, send_json_patch};
use super::report::Outcome;
use crate::helm::{GroupKind, rewrite_release};
use crate::resource::ObjectRef;

/// Rewrites the record `target` so its manifest names none of `remove_kinds`.
pub(super) async fn rewrite_record(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    remove_kinds: &[GroupKind],
) -> Outcome {
    let remove: BTreeSet<GroupKind> = remove_kinds.iter().cloned().collect();
    let secret = target.resource.kind == "Secret";
    for round in 0..MAX_PATCH_ROUNDS {
        if round > 0 {
            tokio::time::sleep(ctx.retry.backoff(round - 1)).await;
        }
        let object = match read_bound(ctx, api, target).await {
            Ok(object) => object,
            Err(outcome) => return outcome,
        };
        let (new_value, dropped) = match rewritten_value(&object, secret, &remove) {
            Ok(Some(rewritten)) => rewritten,
            Ok(None) => {
                return Outcome::Done {
                    detail: Some("its manifest names none of the removed kinds".into()),
                };
            }
            Err(message) => return Outcome::Failed { message },
        };
        let resource_version = object.metadata.resource_version.clone().unwrap_or_default();
        let ops = vec![
            json!({"op": "test", "path": "/metadata/uid", "value": target.uid}),
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
            json!({"op": "replace", "path": "/data/release", "value": new_value}),
        ];
        match send_json_patch(ctx, api, target, ops).await {
            Patched::Applied => {
                return Outcome::Done {
                    detail: Some(format!("dropped {}", dropped.join(", "))),
                };
            }
            Patched::Gone => return Outcome::AlreadyGone,
            // A concurrent writer (a `helm upgrade`): read again.
            Patched::Changed(_) => continue,
            Patched::Failed(message) => return Outcome::Failed { message },
        }
    }
    Outcome::Failed {
        message: format!("the record kept changing; gave up after {MAX_PATCH_ROUNDS} attempts"),
    }
}

/// The record's new `release` value as the API stores it (Secret data is
/// base64 once more) and the dropped objects; `None` when nothing names a
/// removed kind.
fn rewritten_value(
    object: &DynamicObject,
    secret: bool,
    remove: &BTreeSet<GroupKind>,
) -> Result<Option<(String, Vec<String>)>, String> {
    let stored = object
        .data
        .pointer("/data/release")
        .and_then(Value::as_str)
        .ok_or("the record has no `release` data")?;
    let engine = base64::engine::general_purpose::STANDARD;
    let helm_value = if secret {
        engine
            .decode(stored.trim_ascii())
            .map_err(|e| format!("the record's data is not valid base64: {e}"))?
    } else {
        stored.as_bytes().to_vec()
    };
    let rewritten = rewrite_release(&helm_value, remove)
        .map_err(|e| format!("the record cannot be rewritten: {e}"))?;
    Ok(rewritten.map(|r| {
        let value = if secret {
            engine.encode(r.value)
        } else {
            r.value
        };
        (value, r.dropped)
    }))
}
