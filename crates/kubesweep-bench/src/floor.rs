//! The floor: a minimal client that removes the footprint of a plan made
//! beforehand (untimed) with only the requests any correct removal must
//! send, many in flight, and nothing else: no discovery, no planning, no
//! backup, no re-plan, no verify, no retries beyond one re-read on conflict.
//!
//! The set, and why each is needed:
//! - one LIST per resource type whose objects lose metadata (finalizers,
//!   labels, owner references): what to keep of a list-valued field cannot be
//!   known without reading it, and a list is the cheapest read;
//! - one PATCH per object whose platform metadata must go (kept namespaces
//!   and user objects; every object holding a platform finalizer, which
//!   nothing else will remove), bound to the listed resourceVersion;
//! - one DELETE per object that nothing else deletes: webhooks,
//!   APIServices, Helm objects and records, RBAC, CRDs, namespaces, and
//!   custom resources that must be orphaned (something names them as
//!   owner). Custom resources of a CRD being deleted are *not* deleted one by
//!   one: deleting the CRD makes the API server delete its instances itself;
//!   objects in a deleted namespace the namespace controller deletes;
//! - the waits: a LIST of CRDs and of namespaces every 200 ms until every
//!   deleted one is gone (a watch would send fewer; the polls are counted).
//!
//! Order, in four waves (each waits for the one before, see [`WAVES`]): the
//! admission webhooks alone (a `Fail` webhook whose Service is gone rejects
//! every write it intercepts, so nothing else may be written before they are
//! gone); then APIServices, workloads, conversion switches and metadata
//! strips of kept objects (before any owner goes, so the garbage collector
//! has nothing of the user's to take); then finalizer strips and the deletes
//! of the rest; then CRDs and namespaces. The API server drops a deleted
//! webhook from its admission chain a moment later (its informer), so a write
//! rejected by a webhook that could not be called is sent again a few times
//! ([`is_dead_webhook`]); one that stays rejected still fails the run. Not
//! done: the last-resort namespace finalize and Helm record rewrites
//! (`--keep-extensions` only).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::stream::{self, StreamExt};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kubesweep::plan::{Action, Operation, PhaseId, Plan, Propagation};
use kubesweep::resource::{ObjectRef, ResourceType};
use serde_json::{Map, Value, json};

/// What one floor run sent (the server's count is the audit log's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorRun {
    /// Requests sent, polls included.
    pub requests: usize,
}

/// Removes what `plan` names with `concurrency` requests in flight; returns
/// when every deleted CRD and namespace is gone (or fails after `timeout`).
pub async fn run(
    client: &Client,
    plan: &Plan,
    concurrency: usize,
    timeout: Duration,
) -> anyhow::Result<FloorRun> {
    let concurrency = concurrency.max(1);
    let mut sent = 0;
    let deleted_crds: BTreeSet<String> = plan
        .actions()
        .filter(|(phase, a)| *phase == PhaseId::Crds && a.operation.deletes())
        .map(|(_, a)| a.target.name.clone())
        .collect();

    // Reads: one list per type whose objects lose metadata.
    let types: BTreeSet<&ResourceType> = plan
        .actions()
        .filter(|(_, a)| needs_current_object(a))
        .map(|(_, a)| &a.target.resource)
        .collect();
    let lists = stream::iter(types.into_iter().map(|t| list_all(client, t)))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut current: HashMap<String, DynamicObject> = HashMap::new();
    for list in lists {
        for object in list? {
            if let Some(uid) = object.metadata.uid.clone() {
                current.insert(uid, object);
            }
        }
        sent += 1;
    }

    for wave in WAVES {
        let actions: Vec<&Action> = plan
            .actions()
            .filter(|(phase, _)| wave.contains(phase))
            .map(|(_, a)| a)
            .collect();
        let results = stream::iter(
            actions
                .into_iter()
                .map(|a| execute(client, a, current.get(&a.target.uid), &deleted_crds)),
        )
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
        for r in results {
            sent += r?;
        }
    }

    let namespaces: BTreeSet<String> = plan
        .actions()
        .filter(|(phase, a)| *phase == PhaseId::Namespaces && a.operation.deletes())
        .map(|(_, a)| a.target.name.clone())
        .collect();
    sent += wait_gone(client, &deleted_crds, &namespaces, timeout).await?;
    Ok(FloorRun { requests: sent })
}

/// The phases of each wave, in order. The webhooks go alone and first:
/// every later write may be one a dead `Fail` webhook intercepts.
pub const WAVES: [&[PhaseId]; 4] = [
    &[PhaseId::ValidatingWebhooks, PhaseId::MutatingWebhooks],
    &[
        PhaseId::ApiServices,
        PhaseId::HelmWorkloads,
        PhaseId::KeptObjects,
        PhaseId::CrdConversion,
    ],
    &[
        PhaseId::HelmReleases,
        PhaseId::HelmRecords,
        PhaseId::CustomResources,
        PhaseId::ClusterRegistrations,
        PhaseId::ClusterLeftovers,
    ],
    &[PhaseId::Crds, PhaseId::Namespaces],
];

/// How often a write rejected by a webhook that could not be called is sent
/// again, and the pause before each retry (grows linearly): enough for the
/// API server to drop a just-deleted webhook, bounded so a live foreign
/// webhook still fails the run.
const DEAD_WEBHOOK_RETRIES: u32 = 10;
const DEAD_WEBHOOK_PAUSE: Duration = Duration::from_millis(100);

/// Whether the API server refused a write because an admission webhook
/// could not be called (its Service or endpoints gone, a timeout): the
/// server answers 500 "Internal error occurred: failed calling webhook
/// \"NAME\": ...". Pure.
pub fn is_dead_webhook(code: u16, message: &str) -> bool {
    code == 500 && message.contains("failed calling webhook")
}

/// Sends `request` again while a dead webhook rejects it (see
/// [`DEAD_WEBHOOK_RETRIES`]); returns its last answer and how many requests
/// were sent.
async fn past_dead_webhooks<T, F, Fut>(mut request: F) -> (Result<T, kube::Error>, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut sent = 0;
    for attempt in 0.. {
        let result = request().await;
        sent += 1;
        match &result {
            Err(kube::Error::Api(e))
                if is_dead_webhook(e.code, &e.message) && attempt < DEAD_WEBHOOK_RETRIES =>
            {
                tokio::time::sleep(DEAD_WEBHOOK_PAUSE * (attempt + 1)).await;
            }
            _ => return (result, sent),
        }
    }
    unreachable!("the loop returns")
}

/// Whether the action's request body depends on the object's current
/// metadata (list-valued fields are replaced whole by a merge patch).
fn needs_current_object(action: &Action) -> bool {
    match &action.operation {
        Operation::StripMetadata {
            finalizers,
            owner_reference_uids,
            ..
        } => !finalizers.is_empty() || !owner_reference_uids.is_empty(),
        Operation::StripFinalizersThenDelete { finalizers, .. }
        | Operation::RemovedWithCrd { finalizers, .. } => !finalizers.is_empty(),
        _ => false,
    }
}

async fn list_all(client: &Client, t: &ResourceType) -> anyhow::Result<Vec<DynamicObject>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &t.api_resource());
    Ok(api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("list {t}"))?
        .items)
}

fn api_for(client: &Client, target: &ObjectRef) -> Api<DynamicObject> {
    let ar = target.resource.api_resource();
    match &target.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Sends the action's requests; returns how many.
async fn execute(
    client: &Client,
    action: &Action,
    object: Option<&DynamicObject>,
    deleted_crds: &BTreeSet<String>,
) -> anyhow::Result<usize> {
    let target = &action.target;
    let api = api_for(client, target);
    // Instances of a CRD being deleted go with it, unless they must be orphaned.
    let crd_takes_it = |propagation: Propagation| {
        !matches!(propagation, Propagation::Orphan)
            && !target.resource.group.is_empty()
            && deleted_crds.contains(&target.resource.qualified_plural())
    };
    let mut sent = 0;
    match &action.operation {
        Operation::Delete { propagation } => {
            if !crd_takes_it(*propagation) {
                sent += delete(&api, target, *propagation).await?;
            }
        }
        Operation::StripFinalizersThenDelete {
            finalizers,
            propagation,
        } => {
            if !finalizers.is_empty() {
                sent += strip(&api, target, object, &[], &[], finalizers, &[]).await?;
            }
            if !crd_takes_it(*propagation) {
                sent += delete(&api, target, *propagation).await?;
            }
        }
        Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        } => {
            sent += strip(
                &api,
                target,
                object,
                labels,
                annotations,
                finalizers,
                owner_reference_uids,
            )
            .await?;
        }
        // The plan itself leaves these to the CRD's deletion.
        Operation::RemovedWithCrd { finalizers, .. } => {
            if !finalizers.is_empty() {
                sent += strip(&api, target, object, &[], &[], finalizers, &[]).await?;
            }
        }
        Operation::DisableConversionWebhook => {
            let body = Patch::Merge(json!({"spec": {"conversion": {"strategy": "None"}}}));
            let params = PatchParams::default();
            let (result, n) = past_dead_webhooks(|| api.patch(&target.name, &params, &body)).await;
            sent += n;
            ignore_gone(result)?;
        }
        Operation::FinalizeNamespaceIfStuck | Operation::RewriteHelmRecord { .. } => {}
    }
    Ok(sent)
}

/// Deletes `target` (UID precondition); returns how many requests were sent.
async fn delete(
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    propagation: Propagation,
) -> anyhow::Result<usize> {
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Orphan => kube::api::PropagationPolicy::Orphan,
            Propagation::Background => kube::api::PropagationPolicy::Background,
            Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
        }),
        preconditions: Some(Preconditions {
            uid: Some(target.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let (result, sent) = past_dead_webhooks(|| api.delete(&target.name, &params)).await;
    ignore_gone(result.map(|_| ())).with_context(|| format!("delete {target}"))?;
    Ok(sent)
}

/// One merge patch that removes the named metadata, bound to the
/// resourceVersion of `object`; on a conflict, one re-read and one retry.
async fn strip(
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    object: Option<&DynamicObject>,
    labels: &[String],
    annotations: &[String],
    finalizers: &[String],
    owner_uids: &[String],
) -> anyhow::Result<usize> {
    let mut sent = 0;
    let mut object = object.cloned();
    for attempt in 0..2 {
        let Some(body) = strip_patch(object.as_ref(), labels, annotations, finalizers, owner_uids)
        else {
            return Ok(sent);
        };
        let body = Patch::Merge(body);
        let params = PatchParams::default();
        let (result, n) = past_dead_webhooks(|| api.patch(&target.name, &params, &body)).await;
        sent += n;
        match result {
            Ok(_) => return Ok(sent),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(sent),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt == 0 => {
                sent += 1;
                match api.get_opt(&target.name).await? {
                    Some(fresh) => object = Some(fresh),
                    None => return Ok(sent),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("patch {target}")),
        }
    }
    bail!("patch {target}: conflict twice")
}

/// The merge patch removing the named entries from `object`'s metadata, or
/// `None` when none is present. Without the object (labels and annotations
/// only) the keys are nulled blind, which a merge patch allows. Pure.
pub fn strip_patch(
    object: Option<&DynamicObject>,
    labels: &[String],
    annotations: &[String],
    finalizers: &[String],
    owner_uids: &[String],
) -> Option<Value> {
    let mut meta = Map::new();
    let meta_of = object.map(|o| &o.metadata);
    for (field, keys, present) in [
        ("labels", labels, meta_of.and_then(|m| m.labels.as_ref())),
        (
            "annotations",
            annotations,
            meta_of.and_then(|m| m.annotations.as_ref()),
        ),
    ] {
        let nulls: Map<String, Value> = keys
            .iter()
            .filter(|k| object.is_none() || present.is_some_and(|p| p.contains_key(*k)))
            .map(|k| (k.clone(), Value::Null))
            .collect();
        if !nulls.is_empty() {
            meta.insert(field.into(), Value::Object(nulls));
        }
    }
    if let Some(m) = meta_of {
        let current = m.finalizers.clone().unwrap_or_default();
        let kept: Vec<&String> = current.iter().filter(|f| !finalizers.contains(f)).collect();
        if kept.len() != current.len() {
            meta.insert("finalizers".into(), json!(kept));
        }
        let owners = m.owner_references.clone().unwrap_or_default();
        let kept: Vec<_> = owners
            .iter()
            .filter(|o| !owner_uids.contains(&o.uid))
            .collect();
        if kept.len() != owners.len() {
            meta.insert("ownerReferences".into(), json!(kept));
        }
        if meta.is_empty() {
            return None;
        }
        if let Some(rv) = &m.resource_version {
            meta.insert("resourceVersion".into(), json!(rv));
        }
    }
    (!meta.is_empty()).then(|| json!({ "metadata": meta }))
}

fn ignore_gone<T>(result: Result<T, kube::Error>) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Polls CRDs and namespaces until none of the named is left.
async fn wait_gone(
    client: &Client,
    crds: &BTreeSet<String>,
    namespaces: &BTreeSet<String>,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let crd_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        },
    );
    let ns_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        },
    );
    let started = std::time::Instant::now();
    let mut sent = 0;
    let names = |list: kube::core::ObjectList<DynamicObject>| -> BTreeSet<String> {
        list.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    loop {
        let all = ListParams::default();
        let (crd_list, ns_list) = futures::try_join!(crd_api.list(&all), ns_api.list(&all))?;
        sent += 2;
        let left_crds = names(crd_list);
        let left_ns = names(ns_list);
        let remaining = crds.iter().filter(|c| left_crds.contains(*c)).count()
            + namespaces.iter().filter(|n| left_ns.contains(*n)).count();
        if remaining == 0 {
            return Ok(sent);
        }
        if started.elapsed() > timeout {
            bail!("{remaining} CRDs and namespaces still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn object(finalizers: &[&str], labels: &[&str]) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect()),
                labels: Some(
                    labels
                        .iter()
                        .map(|l| (l.to_string(), "x".to_string()))
                        .collect(),
                ),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            data: json!({}),
        }
    }

    #[test]
    fn the_webhooks_go_alone_before_any_other_write() {
        assert_eq!(
            WAVES[0],
            &[PhaseId::ValidatingWebhooks, PhaseId::MutatingWebhooks]
        );
        // Every phase the floor executes is in exactly one wave.
        let all: Vec<PhaseId> = WAVES.iter().flat_map(|w| w.iter().copied()).collect();
        let distinct: BTreeSet<PhaseId> = all.iter().copied().collect();
        assert_eq!(all.len(), distinct.len());
        assert_eq!(distinct.len(), 13);
        assert!(!distinct.contains(&PhaseId::Preflight));
    }

    #[test]
    fn a_webhook_that_cannot_be_called_is_told_from_other_refusals() {
        let dead = "Internal error occurred: failed calling webhook \"validator.installplan.kubesphere.io\": \
                    failed to call webhook: Post \"https://ks-controller-manager.kubesphere-system.svc:443/validate\": \
                    service \"ks-controller-manager\" not found";
        assert!(is_dead_webhook(500, dead));
        // A webhook that answered and denied is a real refusal, not a dead one.
        assert!(!is_dead_webhook(
            400,
            "admission webhook \"validator.installplan.kubesphere.io\" denied the request: no"
        ));
        assert!(!is_dead_webhook(500, "etcdserver: request timed out"));
        assert!(!is_dead_webhook(409, dead));
    }

    #[test]
    fn strip_patch_keeps_foreign_finalizers_and_binds_the_version() {
        let o = object(
            &["finalizers.kubesphere.io/x", "example.com/keep"],
            &["kubesphere.io/ws", "team"],
        );
        let patch = strip_patch(
            Some(&o),
            &["kubesphere.io/ws".into(), "absent".into()],
            &[],
            &["finalizers.kubesphere.io/x".into()],
            &[],
        );
        assert_eq!(
            patch,
            Some(json!({"metadata": {
                "labels": {"kubesphere.io/ws": null},
                "finalizers": ["example.com/keep"],
                "resourceVersion": "42",
            }}))
        );
        let clean = object(&["example.com/keep"], &["team"]);
        assert_eq!(
            strip_patch(
                Some(&clean),
                &["kubesphere.io/ws".into()],
                &[],
                &["finalizers.kubesphere.io/x".into()],
                &[]
            ),
            None
        );
        assert_eq!(
            strip_patch(None, &["a".into()], &[], &[], &[]),
            Some(json!({"metadata": {"labels": {"a": null}}}))
        );
    }
}
