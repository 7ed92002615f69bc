//! Removes a seeded footprint by brute force, so that tests leave the shared cluster as they found
//! it: every seeded object loses its finalizers and is deleted, CRDs and namespaces are waited for,
//! and the keys the seed added to the system namespaces are taken off again.
//!
//! This is a fixture reset, not a model for the product: it knows exactly what it created, so it
//! may strip every finalizer of those objects.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};

use crate::crds::{CrdDef, definitions};
use crate::error::{Error, Result};
use crate::footprint::{Footprint, Role, SeededObject};
use crate::seed::{SeedOptions, build_plan, retry_if};

fn api(client: &Client, o: &SeededObject) -> Api<DynamicObject> {
    let ar = o.api_resource();
    match &o.key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// The API server applies a deleted webhook configuration's removal a moment later: until then the
/// Fail webhooks still reject requests (500). Conflicts and throttling are worth a retry too.
fn webhook_lag(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 409 | 429 | 500 | 503 | 504))
}

fn missing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

async fn remove(client: &Client, o: &SeededObject) -> Result<()> {
    let api = api(client, o);
    let err = |action, source| Error::Api {
        action,
        object: o.key.to_string(),
        source,
    };
    if !o.finalizers.is_empty() {
        let body = json!({"metadata": {"finalizers": null}});
        let patch = Patch::Merge(&body);
        let params = PatchParams::default();
        match retry_if(webhook_lag, || api.patch(&o.key.name, &params, &patch)).await {
            Ok(_) => {}
            Err(e) if missing(&e) => return Ok(()),
            Err(e) => return Err(err("patch", e)),
        }
    }
    let params = DeleteParams::background();
    match retry_if(webhook_lag, || api.delete(&o.key.name, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(err("delete", e)),
    }
}

async fn remove_all<'a>(
    client: &Client,
    objects: impl Iterator<Item = &'a SeededObject>,
    concurrency: usize,
) -> Result<()> {
    stream::iter(objects.map(|o| remove(client, o)))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Deletes everything the footprint seeded (platform objects, user data and decoys alike) and
/// restores the system namespaces' labels, annotations and finalizers. Waits until the seeded
/// namespaces and CRDs are gone, so that a following seed starts clean.
pub async fn teardown(client: &Client, footprint: &Footprint, opts: &SeedOptions) -> Result<()> {
    let n = opts.concurrency.max(1);
    let is_gate = |o: &&SeededObject| {
        o.key.kind.ends_with("WebhookConfiguration") || o.key.kind == "APIService"
    };
    // Webhooks first: the Fail ones reject the updates below. APIServices next: an unavailable one
    // stops the namespace controller from deleting any namespace.
    remove_all(client, footprint.objects.iter().filter(is_gate), n).await?;
    let rest = footprint
        .objects
        .iter()
        .filter(|o| !is_gate(o) && o.role != Role::SystemNamespace);
    let (crds, others): (Vec<_>, Vec<_>) =
        rest.partition(|o| o.key.kind == "CustomResourceDefinition");
    remove_all(client, others.iter().copied(), n).await?;
    remove_all(client, crds.iter().copied(), n).await?;
    restore_system_namespaces(client, footprint, opts).await?;

    let wait_for: Vec<&SeededObject> = footprint
        .objects
        .iter()
        .filter(|o| {
            matches!(
                o.key.kind.as_str(),
                "Namespace" | "CustomResourceDefinition"
            ) && o.role != Role::SystemNamespace
        })
        .collect();
    let deadline = Instant::now() + opts.wait_timeout;
    loop {
        let mut left = Vec::new();
        for o in &wait_for {
            match api(client, o).get_opt(&o.key.name).await {
                Ok(Some(_)) => left.push(o.key.to_string()),
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Api {
                        action: "get",
                        object: o.key.to_string(),
                        source,
                    });
                }
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        // Instances written after the first pass (another seed racing this one) keep a CRD
        // Terminating on their finalizers: strip those of every instance left.
        for crd in crds.iter().filter(|o| left.contains(&o.key.to_string())) {
            strip_instances(client, &crd.key.name).await?;
        }
        if Instant::now() > deadline {
            return Err(Error::NotSettled {
                what: format!("deletion of {}", left.join(", ")),
                seconds: opts.wait_timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Takes off exactly the keys the seed added to the system namespaces.
async fn restore_system_namespaces(
    client: &Client,
    footprint: &Footprint,
    opts: &SeedOptions,
) -> Result<()> {
    let plan = build_plan(opts);
    for item in plan
        .items
        .iter()
        .filter(|i| i.object.role == Role::SystemNamespace)
    {
        if footprint
            .find("Namespace", None, &item.object.key.name)
            .is_none()
        {
            continue;
        }
        let api = api(client, &item.object);
        let key = &item.object.key;
        let err = |action, source| Error::Api {
            action,
            object: key.to_string(),
            source,
        };
        let current = api.get(&key.name).await.map_err(|e| err("get", e))?;
        let mut labels = Map::new();
        let mut annotations = Map::new();
        let mut added = Vec::new();
        for patch in [Some(&item.manifest), item.foreign_patch.as_ref()]
            .into_iter()
            .flatten()
        {
            let meta = &patch["metadata"];
            labels.extend(
                meta["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| (k.clone(), Value::Null)),
            );
            annotations.extend(
                meta["annotations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| (k.clone(), Value::Null)),
            );
            added.extend(
                meta["finalizers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
        }
        let finalizers: Vec<&String> = current
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !added.contains(f))
            .collect();
        let body = json!({"metadata": {
            "resourceVersion": current.metadata.resource_version,
            "labels": labels,
            "annotations": annotations,
            "finalizers": finalizers,
        }});
        api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|e| err("patch", e))?;
    }
    Ok(())
}

/// Clears the finalizers of every instance of one of the fixture CRDs, at whichever of the versions
/// the profiles store it (the ones the cluster does not serve answer 404 and are skipped).
pub(crate) async fn strip_instances(client: &Client, crd_name: &str) -> Result<()> {
    for def in definitions(crd_name) {
        strip_instances_of(client, def, crd_name).await?;
    }
    Ok(())
}

async fn strip_instances_of(client: &Client, def: &CrdDef, crd_name: &str) -> Result<()> {
    let ar = def.api_resource();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = match all.list(&Default::default()).await {
        Ok(list) => list,
        Err(e) if missing(&e) => return Ok(()),
        Err(source) => {
            return Err(Error::Api {
                action: "list",
                object: crd_name.into(),
                source,
            });
        }
    };
    let body = json!({"metadata": {"finalizers": null}});
    for item in list.items.iter().filter(|i| {
        i.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
    }) {
        let name = item.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match &item.metadata.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => all.clone(),
        };
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {}
            Err(e) if missing(&e) => {}
            Err(source) => {
                return Err(Error::Api {
                    action: "patch",
                    object: format!("{crd_name} {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}
