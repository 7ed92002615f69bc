//! The namespace fast path: kubesweep empties and finalizes the platform
//! namespaces it deleted at the API server's speed, instead of waiting for
//! the namespace controller, which walks every served type (a list and a
//! deletecollection each) at the controller manager's own request rate
//! whatever the content.
//!
//! Only for a namespace that is Terminating with the planned UID: the API
//! server refuses new objects in a terminating namespace, so what kubesweep
//! lists there can only shrink. Its content is deleted object by object
//! with UID preconditions, pods first and alone (ordered namespace
//! deletion: nothing else goes while a pod still runs), then the rest; then
//! the last-resort finalize ([`super::ops::finalize_namespace`]) proves the
//! namespace empty by listing every served namespaced type and removes the
//! `kubernetes` finalizer. Whatever keeps that proof out of reach (a group
//! that fails discovery, a list that fails, a pod still terminating, an
//! object held by a finalizer, which is never stripped here) leaves the
//! namespace to the controller, as without the fast path; the way each
//! namespace went is reported.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use serde_json::Value;
use tokio::time::Instant;

use super::cancel::Cancel;
use super::ops::{self, Ctx};
use super::report::{ActionReport, NamespacePath, NamespaceWay, Outcome, Progress, millis};
use super::stuck::describe_content;
use crate::discover::{ApiCatalog, discover_api, dynamic_api, error_message, namespace_content};
use crate::inventory::NamespaceContent;
use crate::resource::{ObjectRef, ResourceType};
use crate::retry;

/// Longest the fast path waits for deleted content to vanish in one
/// namespace before leaving it to the controller.
const BUDGET: Duration = Duration::from_secs(15);

/// How long content held only by finalizers is watched before the
/// namespace is left to the controller (a finalizer its owner removes at
/// once, like `kubernetes.io/pvc-protection`, is gone well within it).
const HELD_PATIENCE: Duration = Duration::from_secs(2);

/// Runs the fast path for the namespaces in `targets` (each deleted by
/// this run), concurrently, and reports the way each went.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    targets: Vec<ObjectRef>,
    budget: Duration,
    concurrency: usize,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Vec<NamespacePath> {
    if targets.is_empty() {
        return Vec::new();
    }
    // Discovered once, after the namespaces are Terminating: a type added
    // later cannot hold content in them.
    let catalog = match discover_api(ctx.client).await {
        Ok(catalog) => catalog,
        Err(err) => {
            let why = format!("the served types could not be discovered: {err}");
            return targets
                .into_iter()
                .map(|t| left(&t, 0, why.clone()))
                .inspect(|p| progress.namespace_path(p))
                .collect();
        }
    };
    let budget = budget.min(BUDGET);
    let catalog = &catalog;
    let per_namespace = concurrency.max(1).div_ceil(targets.len()).max(1);
    futures::stream::iter(targets)
        .map(|target| async move {
            let path = one(
                ctx,
                catalog,
                &target,
                budget,
                per_namespace,
                cancel,
                progress,
            )
            .await;
            progress.namespace_path(&path);
            path
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The fast path for one namespace.
async fn one(
    ctx: &Ctx<'_>,
    catalog: &ApiCatalog,
    target: &ObjectRef,
    budget: Duration,
    concurrency: usize,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> NamespacePath {
    let api = dynamic_api(ctx.client, &target.resource, None);
    let what = format!("get {target}");
    match retry::with_retry(ctx.retry, &what, || api.get_opt(&target.name)).await {
        Ok(Some(ns)) if ns.metadata.uid.as_deref() != Some(target.uid.as_str()) => {
            return left(target, 0, "the name holds another namespace now".into());
        }
        Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_none() => {
            return left(target, 0, "the namespace is not terminating".into());
        }
        Ok(Some(_)) => {}
        Ok(None) => return left(target, 0, "already gone".into()),
        Err(err) => return left(target, 0, error_message(&err)),
    }
    let started = Instant::now();
    let mut deleted = 0;
    // Pods first, and nothing else while one remains (ordered deletion).
    let pods = only_pods(catalog);
    for types in [&pods, catalog] {
        match settle(
            ctx,
            types,
            target,
            started + budget,
            concurrency,
            cancel,
            progress,
        )
        .await
        {
            Ok(n) => deleted += n,
            Err((n, why)) => return left(target, deleted + n, why),
        }
    }
    if cancel.is_cancelled() {
        return left(target, deleted, "interrupted".into());
    }
    match ops::finalize_namespace(ctx, target, Some(catalog), false).await {
        Outcome::Done { .. } => NamespacePath {
            namespace: target.name.clone(),
            uid: target.uid.clone(),
            way: NamespaceWay::Fast,
            deleted,
            detail: format!(
                "emptied ({deleted} objects deleted), proven empty and finalized by kubesweep"
            ),
        },
        Outcome::AlreadyGone => left(target, deleted, "gone before kubesweep finalized it".into()),
        other => left(
            target,
            deleted,
            format!("not finalized: {}", outcome_text(&other)),
        ),
    }
}

/// A catalog of the core pods type alone (and no broken group: pods are
/// core, always discovered).
fn only_pods(catalog: &ApiCatalog) -> ApiCatalog {
    ApiCatalog {
        resources: catalog
            .resources
            .iter()
            .filter(|r| is_pod(&r.resource))
            .cloned()
            .collect(),
        broken: Vec::new(),
    }
}

fn is_pod(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "pods"
}

/// Deletes what `types` list in the namespace until none is left: `Ok`
/// with the number of objects deleted, or `Err` with it and why the
/// namespace must go to the controller.
async fn settle(
    ctx: &Ctx<'_>,
    types: &ApiCatalog,
    target: &ObjectRef,
    deadline: Instant,
    concurrency: usize,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<usize, (usize, String)> {
    let mut deleted = 0;
    let mut pause = Duration::from_millis(100);
    let mut held_since: Option<Instant> = None;
    // The first listing covers every type; later ones only the types that
    // still held something. A type listed empty in a terminating namespace
    // stays empty (the API server refuses new objects there), and the
    // finalize that follows lists every type again as its own proof, so
    // this only saves the repeated lists of empty types.
    let mut listing = types.clone();
    loop {
        // An interrupt sends no further write: the controller finishes.
        if cancel.is_cancelled() {
            return Err((deleted, "interrupted".into()));
        }
        let content = namespace_content(ctx.client, &listing, &target.name, &[]).await;
        if !content.complete() {
            return Err((
                deleted,
                format!(
                    "its content could not be listed completely: {}",
                    content.gaps.join("; ")
                ),
            ));
        }
        if content.iter().next().is_none() {
            return Ok(deleted);
        }
        listing = still_holding(&listing, &content);
        if let Some(pod) = terminating_pod(&content) {
            return Err((deleted, format!("pod {pod} is still terminating")));
        }
        let (count, failure) = delete_all(ctx, &content, concurrency, cancel, progress).await;
        deleted += count;
        if let Some(failure) = failure {
            return Err((deleted, failure));
        }
        if count == 0 && all_held(&content) {
            let since = *held_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= HELD_PATIENCE {
                return Err((
                    deleted,
                    format!(
                        "held by finalizers kubesweep does not remove: {}",
                        describe_content(&content).join(", ")
                    ),
                ));
            }
        } else {
            held_since = None;
        }
        if Instant::now() >= deadline {
            return Err((
                deleted,
                format!(
                    "content still there: {}",
                    describe_content(&content).join(", ")
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The part of `types` that `content` found objects of.
fn still_holding(types: &ApiCatalog, content: &NamespaceContent) -> ApiCatalog {
    ApiCatalog {
        resources: types
            .resources
            .iter()
            .filter(|r| content.objects.iter().any(|l| l.resource == r.resource))
            .cloned()
            .collect(),
        broken: types.broken.clone(),
    }
}

/// A pod that was deleted and waits for its node (graceful termination):
/// the controller waits for it too, kubesweep does not.
fn terminating_pod(content: &NamespaceContent) -> Option<String> {
    content
        .iter()
        .filter(|(rt, _)| is_pod(rt))
        .find(|(_, o)| {
            o.metadata.deletion_timestamp.is_some()
                && o.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
                && o.data
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some()
        })
        .map(|(_, o)| o.metadata.name.clone().unwrap_or_default())
}

/// Whether every object left is being deleted and held by a finalizer.
fn all_held(content: &NamespaceContent) -> bool {
    content.iter().all(|(_, o)| {
        o.metadata.deletion_timestamp.is_some()
            && o.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
    })
}

/// Deletes, with UID preconditions, every listed object not yet being
/// deleted: how many were deleted, and the first failure. A refusal is a
/// failure here, not a revoked permission: the preflight check did not
/// ask for these deletions, which the controller makes anyway.
async fn delete_all(
    ctx: &Ctx<'_>,
    content: &NamespaceContent,
    concurrency: usize,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> (usize, Option<String>) {
    let pending: Vec<ObjectRef> = content
        .iter()
        .filter(|(_, o)| o.metadata.deletion_timestamp.is_none())
        .map(|(rt, o)| ObjectRef {
            resource: rt.clone(),
            namespace: Some(content.namespace.clone()),
            name: o.metadata.name.clone().unwrap_or_default(),
            uid: o.metadata.uid.clone().unwrap_or_default(),
            resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
        })
        .collect();
    let outcomes: Vec<Outcome> = futures::stream::iter(pending)
        // Checked as each slot frees up, as in a phase.
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|target| async move {
            let started = Instant::now();
            let outcome = delete_one(ctx, &target).await;
            progress.fast_path_write(&ActionReport {
                target,
                operation: "delete (namespace fast path)".into(),
                outcome: outcome.clone(),
                duration_ms: millis(started.elapsed()),
            });
            outcome
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let count = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Done { .. }))
        .count();
    let failure = outcomes.iter().find_map(|o| match o {
        Outcome::Failed { message } => Some(message.clone()),
        _ => None,
    });
    (count, failure)
}

async fn delete_one(ctx: &Ctx<'_>, target: &ObjectRef) -> Outcome {
    let api = dynamic_api(ctx.client, &target.resource, target.namespace.as_deref());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: Some(target.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let what = format!("delete {target}");
    match retry::with_retry(ctx.retry, &what, || api.delete(&target.name, &params)).await {
        Ok(_) => Outcome::Done { detail: None },
        // Gone, or a precondition failure: the name cannot hold a new
        // object in a terminating namespace, so the planned one is gone.
        Err(err) if retry::is_not_found(&err) || retry::is_conflict(&err) => Outcome::AlreadyGone,
        Err(err) => Outcome::Failed {
            message: format!("{what}: {}", error_message(&err)),
        },
    }
}

/// The namespace left to the controller, logged and reported.
fn left(target: &ObjectRef, deleted: usize, detail: String) -> NamespacePath {
    tracing::info!(namespace = %target.name, detail, "namespace left to the namespace controller");
    NamespacePath {
        namespace: target.name.clone(),
        uid: target.uid.clone(),
        way: NamespaceWay::Controller,
        deleted,
        detail,
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Skipped { reason } => reason.clone(),
        Outcome::Failed { message } => message.clone(),
        Outcome::SkippedStale { found_uid } => format!("the name now belongs to uid {found_uid}"),
        Outcome::Done { .. } | Outcome::AlreadyGone => outcome.name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ObservedList;
    use crate::plan::test_support::{obj, rt};
    use serde_json::json;

    fn content(objects: Vec<(ResourceType, kube::api::DynamicObject)>) -> NamespaceContent {
        NamespaceContent {
            namespace: "ns".into(),
            objects: objects
                .into_iter()
                .map(|(resource, o)| ObservedList {
                    resource,
                    objects: vec![o],
                })
                .collect(),
            gaps: vec![],
        }
    }

    #[test]
    fn a_deleted_pod_on_a_node_is_terminating_one_without_a_node_is_not() {
        let pods = rt("", "v1", "Pod", "pods", true);
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": "n1"}});
        let on_node = content(vec![(
            pods.clone(),
            obj("v1", "Pod", Some("ns"), "p", deleting),
        )]);
        assert_eq!(terminating_pod(&on_node).as_deref(), Some("p"));
        let unscheduled =
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}});
        let pending = content(vec![(pods, obj("v1", "Pod", Some("ns"), "p", unscheduled))]);
        assert_eq!(terminating_pod(&pending), None);
    }

    #[test]
    fn later_listings_cover_only_the_types_that_still_held_something() {
        use crate::discover::ServedResource;
        let cms = rt("", "v1", "ConfigMap", "configmaps", true);
        let secrets = rt("", "v1", "Secret", "secrets", true);
        let served = |resource: &ResourceType| ServedResource {
            resource: resource.clone(),
            verbs: vec!["list".into(), "delete".into()],
        };
        let types = ApiCatalog {
            resources: vec![served(&cms), served(&secrets)],
            broken: Vec::new(),
        };
        let found = content(vec![(
            secrets.clone(),
            obj("v1", "Secret", Some("ns"), "s", json!({})),
        )]);
        let next = still_holding(&types, &found);
        assert_eq!(next.resources, vec![served(&secrets)]);
        assert!(still_holding(&next, &content(vec![])).resources.is_empty());
    }

    #[test]
    fn held_means_being_deleted_and_holding_a_finalizer() {
        let cms = rt("", "v1", "ConfigMap", "configmaps", true);
        let held = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["acme.example.com/hold"]}});
        let free = json!({"metadata": {"finalizers": ["acme.example.com/hold"]}});
        assert!(all_held(&content(vec![(
            cms.clone(),
            obj("v1", "ConfigMap", Some("ns"), "a", held.clone())
        )])));
        assert!(!all_held(&content(vec![
            (cms.clone(), obj("v1", "ConfigMap", Some("ns"), "a", held)),
            (cms, obj("v1", "ConfigMap", Some("ns"), "b", free)),
        ])));
    }
}
