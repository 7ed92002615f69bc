//! The individual mutations, each bound to the planned UID: delete with a UID
//! precondition, metadata removal by JSON patch (test on `resourceVersion`,
//! removal by value, re-read and recompute on conflict), disabling a CRD's
//! conversion webhook, and the guarded namespace `/finalize`.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use serde_json::{Value, json};

use super::report::Outcome;
use super::stuck;
use crate::discover::{ApiCatalog, dynamic_api, error_message, namespace_content};
use crate::inventory::NamespaceContent;
use crate::plan::{Action, Operation, Propagation};
use crate::profile::ALWAYS_PROTECTED_NAMESPACES;
use crate::resource::ObjectRef;
use crate::retry::{self, RetryPolicy};

/// How often a metadata patch is recomputed after a concurrent change before giving up.
pub(crate) const MAX_PATCH_ROUNDS: u32 = 6;

/// What the executor needs for every action.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub retry: &'a RetryPolicy,
    /// The plan's flag for the last-resort namespace finalize.
    pub allow_finalize: bool,
    /// The first request the authorizer refused (`VERB OBJECT: message`).
    /// The preflight check proved every permission before the first change,
    /// so a refusal now means they were taken away during the run: every
    /// further request would be refused too, so none is sent.
    pub denied: OnceLock<String>,
}

impl Ctx<'_> {
    /// A context for `client` (no permission refused yet).
    pub(crate) fn new<'a>(
        client: &'a Client,
        retry: &'a RetryPolicy,
        allow_finalize: bool,
    ) -> Ctx<'a> {
        Ctx {
            client,
            retry,
            allow_finalize,
            denied: OnceLock::new(),
        }
    }

    /// One request, retried by the policy; a refusal by the authorizer is
    /// remembered (see [`Ctx::denied`]). `what` says verb and object.
    pub(crate) async fn request<T, F, Fut>(&self, what: &str, op: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let result = retry::with_retry(self.retry, what, op).await;
        if let Err(err) = &result {
            self.note_denial(what, err);
        }
        result
    }

    /// Remembers `err` when it is the authorizer's refusal of `what`.
    pub(crate) fn note_denial(&self, what: &str, err: &kube::Error) {
        if retry::is_permission_denied(err) {
            let _ = self.denied.set(format!("{what}: {}", error_message(err)));
        }
    }

    /// The first refused request, once one was refused.
    pub(crate) fn denial(&self) -> Option<&str> {
        self.denied.get().map(String::as_str)
    }
}

/// The field manager of kubesweep's writes, so `managedFields` tell them
/// from a platform controller's (see [`crate::verify::Leftover::writers`]).
pub const FIELD_MANAGER: &str = "kubesweep";

/// Parameters of every patch kubesweep sends.
pub(crate) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Metadata entries to remove, by value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Label keys.
    pub labels: Vec<String>,
    /// Annotation keys.
    pub annotations: Vec<String>,
    /// `metadata.finalizers` values.
    pub finalizers: Vec<String>,
    /// `metadata.ownerReferences[].uid` values.
    pub owner_reference_uids: Vec<String>,
}

/// Runs one action and reports its outcome; never panics, never returns an error.
pub(crate) async fn run_action(ctx: &Ctx<'_>, action: &Action) -> Outcome {
    let target = &action.target;
    if let Some(reason) = refuse_protected(target, &action.operation) {
        tracing::warn!(%target, reason, "refused");
        return Outcome::Skipped { reason };
    }
    let api = dynamic_api(ctx.client, &target.resource, target.namespace.as_deref());
    match &action.operation {
        Operation::Delete { propagation } => delete_bound(ctx, &api, target, *propagation).await,
        Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        } => {
            let removal = Removal {
                labels: labels.clone(),
                annotations: annotations.clone(),
                finalizers: finalizers.clone(),
                owner_reference_uids: owner_reference_uids.clone(),
            };
            strip_metadata(ctx, &api, target, &removal).await
        }
        Operation::StripFinalizersThenDelete {
            finalizers,
            propagation,
        } => strip_finalizers_then_delete(ctx, &api, target, finalizers, *propagation).await,
        Operation::RemovedWithCrd { finalizers, crd } => {
            strip_for_crd_deletion(ctx, &api, target, finalizers, crd).await
        }
        Operation::DisableConversionWebhook => disable_conversion(ctx, &api, target).await,
        Operation::FinalizeNamespaceIfStuck => finalize_namespace(ctx, target, None, true).await,
        Operation::RewriteHelmRecord { remove_kinds } => {
            super::helm_record::rewrite_record(ctx, &api, target, remove_kinds).await
        }
    }
}

/// Defence in depth: whatever the plan says, the well-known system namespaces
/// are never deleted or finalized (only their metadata may be cleaned).
pub(crate) fn refuse_protected(target: &ObjectRef, operation: &Operation) -> Option<String> {
    let is_namespace = target.resource.group.is_empty() && target.resource.plural == "namespaces";
    let destructive = matches!(
        operation,
        Operation::Delete { .. }
            | Operation::StripFinalizersThenDelete { .. }
            | Operation::RemovedWithCrd { .. }
            | Operation::FinalizeNamespaceIfStuck
    );
    (is_namespace && destructive && ALWAYS_PROTECTED_NAMESPACES.contains(&target.name.as_str()))
        .then(|| {
            format!(
                "namespace {} is protected: never deleted or finalized",
                target.name
            )
        })
}

fn propagation_policy(p: Propagation) -> PropagationPolicy {
    match p {
        Propagation::Orphan => PropagationPolicy::Orphan,
        Propagation::Background => PropagationPolicy::Background,
        Propagation::Foreground => PropagationPolicy::Foreground,
    }
}

pub(crate) async fn get_opt(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
) -> Result<Option<DynamicObject>, kube::Error> {
    let what = format!("get {target}");
    ctx.request(&what, || api.get_opt(&target.name)).await
}

/// Reads the target bound to its planned UID: `Err` with the outcome to
/// report when it is gone, unreadable, or its name now holds another object.
pub(crate) async fn read_bound(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
) -> Result<DynamicObject, Outcome> {
    match get_opt(ctx, api, target).await {
        Ok(None) => Err(Outcome::AlreadyGone),
        Ok(Some(object)) => match stale(&object, target) {
            Some(outcome) => Err(outcome),
            None => Ok(object),
        },
        Err(err) => Err(Outcome::Failed {
            message: error_message(&err),
        }),
    }
}

/// Compares the live object's UID with the planned one.
pub(crate) fn stale(object: &DynamicObject, target: &ObjectRef) -> Option<Outcome> {
    let found = object.metadata.uid.clone().unwrap_or_default();
    (found != target.uid).then_some(Outcome::SkippedStale { found_uid: found })
}

/// DELETE bound to the planned UID. A 409 means the precondition failed; we
/// re-read to tell a re-created object (stale: untouched) from a vanished one.
pub(crate) async fn delete_bound(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    propagation: Propagation,
) -> Outcome {
    delete_bound_keeping(ctx, api, target, propagation).await.0
}

/// [`delete_bound`], also returning the object as the server answered the
/// delete when it still exists (finalizers pending): it is the planned object
/// (the UID precondition held) as of that moment, so the finalizer strip that
/// follows can start from it instead of a GET of its own; its patch tests the
/// resourceVersion, so a change since is still detected and re-read.
async fn delete_bound_keeping(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    propagation: Propagation,
) -> (Outcome, Option<DynamicObject>) {
    let params = DeleteParams {
        propagation_policy: Some(propagation_policy(propagation)),
        preconditions: Some(Preconditions {
            uid: Some(target.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let what = format!("delete {target}");
    match ctx
        .request(&what, || api.delete(&target.name, &params))
        .await
    {
        Ok(answer) => (Outcome::Done { detail: None }, answer.left()),
        Err(err) if retry::is_not_found(&err) => (Outcome::AlreadyGone, None),
        Err(err) if retry::is_conflict(&err) => (
            match get_opt(ctx, api, target).await {
                Ok(None) => Outcome::AlreadyGone,
                Ok(Some(object)) => stale(&object, target).unwrap_or_else(|| Outcome::Failed {
                    message: error_message(&err),
                }),
                Err(read) => Outcome::Failed {
                    message: format!(
                        "{}; re-read failed: {}",
                        error_message(&err),
                        error_message(&read)
                    ),
                },
            },
            None,
        ),
        Err(err) => (
            Outcome::Failed {
                message: error_message(&err),
            },
            None,
        ),
    }
}

/// Removes exactly the requested metadata entries. Reads the object, checks
/// the UID, computes a JSON patch that tests `uid` and `resourceVersion` and
/// removes entries by the index they have *in the object as read*; if anyone
/// changed the object meanwhile the tests fail (409/422) and we start over
/// from a fresh read, so only the planned entries are ever removed.
pub(crate) async fn strip_metadata(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    removal: &Removal,
) -> Outcome {
    strip_metadata_from(ctx, api, target, removal, None).await
}

/// [`strip_metadata`] whose first round starts from `known`, an answer of
/// the server about the target (UID checked here again), instead of a read.
async fn strip_metadata_from(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    removal: &Removal,
    mut known: Option<DynamicObject>,
) -> Outcome {
    let mut last_error = String::new();
    for round in 0..MAX_PATCH_ROUNDS {
        if round > 0 {
            tokio::time::sleep(ctx.retry.backoff(round - 1)).await;
        }
        let read = match known.take() {
            Some(object) => match stale(&object, target) {
                Some(outcome) => Err(outcome),
                None => Ok(object),
            },
            None => read_bound(ctx, api, target).await,
        };
        let object = match read {
            Ok(object) => object,
            Err(outcome) => return outcome,
        };
        let Some(ops) = removal_patch(&object, removal) else {
            return Outcome::Done {
                detail: Some("nothing left to remove".into()),
            };
        };
        match send_json_patch(ctx, api, target, ops).await {
            Patched::Applied => return Outcome::Done { detail: None },
            Patched::Gone => return Outcome::AlreadyGone,
            Patched::Changed(error) => {
                tracing::debug!(%target, round, %error, "object changed since read; recomputing the patch");
                last_error = error;
            }
            Patched::Failed(message) => return Outcome::Failed { message },
        }
    }
    Outcome::Failed {
        message: format!("object kept changing; last error: {last_error}"),
    }
}

/// How one guarded JSON patch ended.
pub(crate) enum Patched {
    /// The server applied it.
    Applied,
    /// The object is gone.
    Gone,
    /// The object changed since it was read (409, or a `test` failed: 422):
    /// read it again and recompute the patch.
    Changed(String),
    /// Any other failure, with its message.
    Failed(String),
}

/// Sends the JSON patch `ops` (whose `test`s bind it to what was read) to
/// `target`, retrying transient errors.
pub(crate) async fn send_json_patch(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    ops: Vec<Value>,
) -> Patched {
    let patch: Patch<()> = match serde_json::from_value(Value::Array(ops)) {
        Ok(patch) => Patch::Json(patch),
        Err(err) => return Patched::Failed(format!("internal: bad patch: {err}")),
    };
    let what = format!("patch {target}");
    let params = patch_params();
    match ctx
        .request(&what, || api.patch(&target.name, &params, &patch))
        .await
    {
        Ok(_) => Patched::Applied,
        Err(err) if retry::is_not_found(&err) => Patched::Gone,
        Err(err) if matches!(retry::status_code(&err), Some(409 | 422)) => {
            Patched::Changed(error_message(&err))
        }
        Err(err) => Patched::Failed(error_message(&err)),
    }
}

/// JSON pointer escaping of one path segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch removing `removal` from `object`, or `None` when nothing
/// requested is present. Guards: tests on `uid` and `resourceVersion`, plus a
/// test of each list entry's value right before its removal. List entries are
/// removed from the highest index down so earlier indices stay valid.
pub fn removal_patch(object: &DynamicObject, removal: &Removal) -> Option<Vec<Value>> {
    let meta = &object.metadata;
    let mut ops = Vec::new();
    for key in &removal.labels {
        if meta.labels.as_ref().is_some_and(|m| m.contains_key(key)) {
            ops.push(json!({"op": "remove", "path": format!("/metadata/labels/{}", escape(key))}));
        }
    }
    for key in &removal.annotations {
        if meta
            .annotations
            .as_ref()
            .is_some_and(|m| m.contains_key(key))
        {
            ops.push(
                json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape(key))}),
            );
        }
    }
    let wanted: BTreeSet<&str> = removal.finalizers.iter().map(String::as_str).collect();
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    for (i, f) in finalizers.iter().enumerate().rev() {
        if wanted.contains(f.as_str()) {
            let path = format!("/metadata/finalizers/{i}");
            ops.push(json!({"op": "test", "path": path, "value": f}));
            ops.push(json!({"op": "remove", "path": path}));
        }
    }
    let wanted: BTreeSet<&str> = removal
        .owner_reference_uids
        .iter()
        .map(String::as_str)
        .collect();
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    for (i, o) in owners.iter().enumerate().rev() {
        if wanted.contains(o.uid.as_str()) {
            let path = format!("/metadata/ownerReferences/{i}");
            ops.push(json!({"op": "test", "path": format!("{path}/uid"), "value": o.uid}));
            ops.push(json!({"op": "remove", "path": path}));
        }
    }
    if ops.is_empty() {
        return None;
    }
    let mut guarded = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": meta.uid.clone().unwrap_or_default()}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version.clone().unwrap_or_default()}),
    ];
    guarded.extend(ops);
    Some(guarded)
}

/// Deletes first, then strips the platform's finalizers. The order matters:
/// once an object carries a deletionTimestamp the API server refuses any new
/// finalizer, so a controller that still runs cannot put its finalizer back
/// between our strip and our delete. The delete is bound to the UID; the strip
/// re-checks it.
async fn strip_finalizers_then_delete(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    finalizers: &[String],
    propagation: Propagation,
) -> Outcome {
    let answered = match delete_bound_keeping(ctx, api, target, propagation).await {
        (Outcome::Done { .. }, answered) => answered,
        (other, _) => return other,
    };
    // The delete's answer carries no object when it is already gone.
    let Some(answered) = answered else {
        return Outcome::Done { detail: None };
    };
    if finalizers.is_empty() {
        return Outcome::Done { detail: None };
    }
    let removal = Removal {
        finalizers: finalizers.to_vec(),
        ..Removal::default()
    };
    match strip_metadata_from(ctx, api, target, &removal, Some(answered)).await {
        // Gone right after the delete (no other finalizer): that is success.
        Outcome::AlreadyGone | Outcome::Done { .. } => Outcome::Done { detail: None },
        Outcome::Failed { message } => Outcome::Failed {
            message: format!("deleted, but stripping finalizers failed: {message}"),
        },
        other => other,
    }
}

/// Strips the platform's finalizers from a custom resource and sends no
/// delete: the plan deletes its CRD (UID precondition), and the API server
/// then deletes every instance itself, so the delete that removes this
/// object is the server's, not one kubesweep sends by name. With nothing to
/// strip, nothing is sent.
///
/// The planner saw exactly these finalizers (none foreign) at the planned
/// resourceVersion, so the first patch starts from the plan instead of a
/// read: it tests the UID, that resourceVersion and the whole list, then
/// removes the list. If the object changed since (a failed test), the strip
/// starts over from a fresh read and removes the planned values only, as
/// every metadata strip does.
async fn strip_for_crd_deletion(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    finalizers: &[String],
    crd: &str,
) -> Outcome {
    let removed = format!("removed by the deletion of CRD {crd}, no delete of its own");
    if finalizers.is_empty() {
        return Outcome::Done {
            detail: Some(format!("no finalizer to strip; {removed}")),
        };
    }
    let ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": target.uid}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": target.resource_version}),
        json!({"op": "test", "path": "/metadata/finalizers", "value": finalizers}),
        json!({"op": "remove", "path": "/metadata/finalizers"}),
    ];
    let outcome = match send_json_patch(ctx, api, target, ops).await {
        Patched::Applied => Outcome::Done { detail: None },
        Patched::Gone => Outcome::AlreadyGone,
        Patched::Changed(error) => {
            tracing::debug!(%target, %error, "changed since planning; stripping from a fresh read");
            let removal = Removal {
                finalizers: finalizers.to_vec(),
                ..Removal::default()
            };
            strip_metadata(ctx, api, target, &removal).await
        }
        Patched::Failed(message) => Outcome::Failed { message },
    };
    match outcome {
        Outcome::Done { .. } => Outcome::Done {
            detail: Some(format!("finalizers stripped; {removed}")),
        },
        other => other,
    }
}

/// Sets a CRD's `spec.conversion` to `{strategy: None}`, bound to its UID.
async fn disable_conversion(
    ctx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    target: &ObjectRef,
) -> Outcome {
    let object = match get_opt(ctx, api, target).await {
        Ok(None) => return Outcome::AlreadyGone,
        Ok(Some(object)) => object,
        Err(err) => {
            return Outcome::Failed {
                message: error_message(&err),
            };
        }
    };
    if let Some(outcome) = stale(&object, target) {
        return outcome;
    }
    if object
        .data
        .pointer("/spec/conversion/strategy")
        .and_then(Value::as_str)
        != Some("Webhook")
    {
        return Outcome::Done {
            detail: Some("conversion already not a webhook".into()),
        };
    }
    let patch: Patch<()> = match serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/uid", "value": target.uid},
        {"op": "add", "path": "/spec/conversion", "value": {"strategy": "None"}},
    ])) {
        Ok(p) => Patch::Json(p),
        Err(err) => {
            return Outcome::Failed {
                message: format!("internal: bad patch: {err}"),
            };
        }
    };
    let what = format!("disable conversion of {target}");
    let params = patch_params();
    match ctx
        .request(&what, || api.patch(&target.name, &params, &patch))
        .await
    {
        Ok(_) => Outcome::Done { detail: None },
        Err(err) if retry::is_not_found(&err) => Outcome::AlreadyGone,
        Err(err) if retry::status_code(&err) == Some(422) => {
            match get_opt(ctx, api, target).await {
                Ok(None) => Outcome::AlreadyGone,
                Ok(Some(o)) => stale(&o, target).unwrap_or(Outcome::Failed {
                    message: error_message(&err),
                }),
                Err(_) => Outcome::Failed {
                    message: error_message(&err),
                },
            }
        }
        Err(err) => Outcome::Failed {
            message: error_message(&err),
        },
    }
}

/// The last resort for a platform namespace stuck Terminating. Acts only when
/// the plan allows it, the namespace is the planned one, is already being
/// deleted, no condition says content remains or failed to be deleted, and
/// kubesweep itself has listed every namespaced type served in it and found
/// nothing (absent conditions prove nothing: kube-controller-manager may be
/// down or slow). Then it removes only the `kubernetes` entry from
/// `spec.finalizers` through `/finalize`, sending the object as read so
/// labels, annotations and other finalizers are kept and a concurrent change
/// is detected by its resourceVersion. Anything else is a failure that names
/// the namespace, its conditions and the content found, so the run ends
/// non-zero with the namespace still there and nothing orphaned.
///
/// The namespace fast path ([`super::fast_ns`]) ends here too, with the
/// catalog it discovered once the namespace was Terminating (no new type
/// can hold content in it since) and without the controller's conditions:
/// they date from the controller's last pass, before kubesweep deleted the
/// content, and the listing made here after reading the namespace is the
/// proof either way.
pub(crate) async fn finalize_namespace(
    ctx: &Ctx<'_>,
    target: &ObjectRef,
    catalog: Option<&ApiCatalog>,
    heed_conditions: bool,
) -> Outcome {
    if !ctx.allow_finalize {
        return Outcome::Skipped {
            reason: "the plan does not allow finalizing stuck namespaces".into(),
        };
    }
    let api: Api<DynamicObject> = dynamic_api(ctx.client, &target.resource, None);
    for _ in 0..MAX_PATCH_ROUNDS {
        let mut object = match get_opt(ctx, &api, target).await {
            Ok(None) => return Outcome::AlreadyGone,
            Ok(Some(object)) => object,
            Err(err) => {
                return Outcome::Failed {
                    message: error_message(&err),
                };
            }
        };
        if let Some(outcome) = stale(&object, target) {
            return outcome;
        }
        if object.metadata.deletion_timestamp.is_none() {
            return Outcome::Skipped {
                reason: "namespace is not terminating".into(),
            };
        }
        // Listed after reading the namespace: a Terminating namespace
        // accepts no new objects, so what is empty now stays empty. Listed
        // even when a condition already blocks, to name what is left.
        let listed = match catalog {
            Some(catalog) => Ok(namespace_content(ctx.client, catalog, &target.name, &[]).await),
            None => stuck::remaining_content(ctx.client, &target.name).await,
        };
        let blocker = if heed_conditions {
            finalize_blocker(&object)
        } else {
            None
        };
        match (blocker, listed) {
            (None, Ok(content)) if content.complete() && content.iter().next().is_none() => {}
            (Some(reason), Ok(content)) => return stuck(target, &object, reason, Some(&content)),
            (Some(reason), Err(message)) => {
                return stuck(target, &object, format!("{reason}; {message}"), None);
            }
            (None, Ok(content)) => {
                let reason = if content.complete() {
                    "content remains, finalizing would orphan it".to_owned()
                } else {
                    "its content could not be listed completely, so it cannot be proven empty"
                        .to_owned()
                };
                return stuck(target, &object, reason, Some(&content));
            }
            (None, Err(message)) => return stuck(target, &object, message, None),
        }
        let Some(finalizers) = object
            .data
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        else {
            return Outcome::Done {
                detail: Some("no spec finalizer left".into()),
            };
        };
        let before = finalizers.len();
        finalizers.retain(|f| f.as_str() != Some("kubernetes"));
        if finalizers.len() == before {
            return Outcome::Done {
                detail: Some("no `kubernetes` finalizer left".into()),
            };
        }
        let what = format!("finalize {target}");
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match ctx
            .request(&what, || {
                api.replace_subresource("finalize", &target.name, &params, &object)
            })
            .await
        {
            Ok(_) => {
                return Outcome::Done {
                    detail: Some("removed spec finalizer `kubernetes`".into()),
                };
            }
            Err(err) if retry::is_not_found(&err) => return Outcome::AlreadyGone,
            Err(err) if retry::is_conflict(&err) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(err) => {
                return Outcome::Failed {
                    message: error_message(&err),
                };
            }
        }
    }
    Outcome::Failed {
        message: "namespace kept changing".into(),
    }
}

/// A namespace left Terminating, not finalized: a failure (the run must end
/// non-zero) that says which namespace, why, its True conditions and what is
/// still in it.
fn stuck(
    target: &ObjectRef,
    namespace: &DynamicObject,
    reason: String,
    content: Option<&NamespaceContent>,
) -> Outcome {
    let mut message = format!(
        "namespace {} stays Terminating, not finalized: {reason}",
        target.name
    );
    let conditions = true_conditions(namespace);
    if !conditions.is_empty() {
        message.push_str(&format!("; conditions: {}", conditions.join("; ")));
    }
    if let Some(content) = content {
        message.push_str(&format!(
            "; content left: {}",
            stuck::describe_content(content).join(", ")
        ));
    }
    tracing::warn!(namespace = %target.name, message, "namespace not finalized");
    Outcome::Failed { message }
}

/// `type: message` of every condition whose status is True.
fn true_conditions(namespace: &DynamicObject) -> Vec<String> {
    namespace
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
        .collect()
}

/// Why a terminating namespace must not be finalized, from its conditions:
/// content or content finalizers remain, or deleting content failed. (A
/// discovery failure alone does not block: it is what `/finalize` exists
/// for, and the content listing that follows must still find nothing.)
pub fn finalize_blocker(namespace: &DynamicObject) -> Option<String> {
    let conditions = namespace
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    let blocking: Vec<String> = conditions
        .iter()
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .filter_map(|c| {
            let kind = c.get("type").and_then(Value::as_str)?;
            matches!(
                kind,
                "NamespaceContentRemaining"
                    | "NamespaceFinalizersRemaining"
                    | "NamespaceDeletionContentFailure"
            )
            .then(|| {
                format!(
                    "{kind}: {}",
                    c.get("message").and_then(Value::as_str).unwrap_or_default()
                )
            })
        })
        .collect();
    (!blocking.is_empty()).then(|| {
        format!(
            "content remains, finalizing would orphan it ({})",
            blocking.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn object() -> DynamicObject {
        let mut o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n", "uid": "u1", "resourceVersion": "7",
                "labels": {"kubesphere.io/workspace": "ws", "team": "a"},
                "annotations": {"kubesphere.io/creator": "admin", "x/y": "z"},
                "finalizers": ["foreign.io/keep", "kubesphere.io/cascading-deletion", "other"]}
        }))
        .expect("valid object");
        o.metadata.owner_references = Some(vec![
            OwnerReference {
                api_version: "tenant.kubesphere.io/v1alpha1".into(),
                kind: "Workspace".into(),
                name: "ws".into(),
                uid: "ws-uid".into(),
                ..Default::default()
            },
            OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "d".into(),
                uid: "d-uid".into(),
                ..Default::default()
            },
        ]);
        o
    }

    #[test]
    fn patch_removes_only_requested_entries_by_value() {
        let removal = Removal {
            labels: vec!["kubesphere.io/workspace".into(), "absent".into()],
            annotations: vec!["kubesphere.io/creator".into()],
            finalizers: vec!["kubesphere.io/cascading-deletion".into()],
            owner_reference_uids: vec!["ws-uid".into()],
        };
        let ops = removal_patch(&object(), &removal).expect("something to remove");
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).expect("valid patch");
        let mut doc = serde_json::to_value(object()).expect("serialise");
        json_patch::patch(&mut doc, &patch).expect("applies");
        let meta = &doc["metadata"];
        assert_eq!(meta["labels"], json!({"team": "a"}));
        assert_eq!(meta["annotations"], json!({"x/y": "z"}));
        assert_eq!(meta["finalizers"], json!(["foreign.io/keep", "other"]));
        assert_eq!(meta["ownerReferences"].as_array().map(Vec::len), Some(1));
        assert_eq!(meta["ownerReferences"][0]["uid"], "d-uid");
    }

    #[test]
    fn patch_fails_when_resource_version_moved() {
        let removal = Removal {
            finalizers: vec!["other".into()],
            ..Removal::default()
        };
        let ops = removal_patch(&object(), &removal).expect("something to remove");
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).expect("valid patch");
        let mut moved = object();
        moved.metadata.resource_version = Some("8".into());
        let mut doc = serde_json::to_value(moved).expect("serialise");
        assert!(json_patch::patch(&mut doc, &patch).is_err());
    }

    #[test]
    fn nothing_to_remove_is_none() {
        let removal = Removal {
            labels: vec!["absent".into()],
            ..Removal::default()
        };
        assert!(removal_patch(&object(), &removal).is_none());
    }

    #[test]
    fn system_namespaces_are_refused() {
        let target = ObjectRef {
            resource: crate::inventory::types::namespace(),
            namespace: None,
            name: "kube-system".into(),
            uid: "u".into(),
            resource_version: "1".into(),
        };
        assert!(refuse_protected(&target, &Operation::FinalizeNamespaceIfStuck).is_some());
        assert!(
            refuse_protected(
                &target,
                &Operation::Delete {
                    propagation: Propagation::Background
                }
            )
            .is_some()
        );
        let strip = Operation::StripMetadata {
            labels: vec![],
            annotations: vec![],
            finalizers: vec![],
            owner_reference_uids: vec![],
        };
        assert!(refuse_protected(&target, &strip).is_none());
    }

    fn terminating(conditions: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "ns", "uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": conditions},
        }))
        .expect("namespace")
    }

    #[test]
    fn conditions_saying_content_remains_or_failed_block_finalize() {
        for kind in [
            "NamespaceContentRemaining",
            "NamespaceFinalizersRemaining",
            "NamespaceDeletionContentFailure",
        ] {
            let ns = terminating(json!([{"type": kind, "status": "True", "message": "m"}]));
            let reason = finalize_blocker(&ns).unwrap_or_default();
            assert!(reason.contains(kind), "{kind}: {reason}");
        }
        // False conditions and a discovery failure alone leave the decision
        // to kubesweep's own listing of the content.
        let ns = terminating(json!([
            {"type": "NamespaceContentRemaining", "status": "False", "message": ""},
            {"type": "NamespaceDeletionDiscoveryFailure", "status": "True", "message": "x"},
        ]));
        assert_eq!(finalize_blocker(&ns), None);
    }

    #[test]
    fn a_stuck_namespace_is_a_failure_naming_it_its_conditions_and_content() {
        let ns = terminating(json!([
            {"type": "NamespaceFinalizersRemaining", "status": "True",
             "message": "Some content in the namespace has finalizers remaining: acme.example.com/hold in 1 resource instances"},
        ]));
        let target = ObjectRef {
            resource: crate::inventory::types::namespace(),
            namespace: None,
            name: "ns".into(),
            uid: "u".into(),
            resource_version: "1".into(),
        };
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "held", "namespace": "ns", "finalizers": ["acme.example.com/hold"]},
        }))
        .expect("pod");
        let content = NamespaceContent {
            namespace: "ns".into(),
            objects: vec![crate::inventory::ObservedList {
                resource: crate::plan::test_support::rt("", "v1", "Pod", "pods", true),
                objects: vec![pod],
            }],
            gaps: vec![],
        };
        let outcome = stuck(&target, &ns, "content remains".into(), Some(&content));
        let Outcome::Failed { message } = outcome else {
            panic!("not a failure: {outcome:?}");
        };
        assert!(
            message.contains("namespace ns stays Terminating"),
            "{message}"
        );
        assert!(
            message.contains("NamespaceFinalizersRemaining"),
            "{message}"
        );
        assert!(
            message.contains("Pod ns/held (finalizers: acme.example.com/hold)"),
            "{message}"
        );
    }
}
