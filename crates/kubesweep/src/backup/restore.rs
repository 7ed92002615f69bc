//! Cluster I/O of a restore: runs the waves of [`super::order`] against the
//! API. Re-created objects are created without their server-set fields (so
//! objects that were Terminating come back live), owner references follow
//! owners to their new UIDs, existing objects are left alone unless
//! overwriting was asked for, and kept objects get back exactly the metadata
//! the cleanup removed. The archive must already be verified.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::archive::{Archive, StoredObject};
use super::format::RestoreMode;
use super::order::{self, Stage};
use crate::discover::{ApiCatalog, ApiDiscoveryError, discover_api, dynamic_api, error_message};
use crate::inventory::types;
use crate::retry::{self, RetryPolicy};

/// How a restore runs.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Only report what would happen (reads, never writes).
    pub dry_run: bool,
    /// Replace objects that exist with the archived version.
    pub overwrite: bool,
    /// How long to wait for each restored CRD to become Established.
    pub crd_timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            overwrite: false,
            crd_timeout: Duration::from_secs(60),
            concurrency: 16,
        }
    }
}

/// What happened to one archived object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Created again.
    Created,
    /// Dry run: would be created.
    WouldCreate,
    /// Exists; left as it is.
    Exists,
    /// Existed and was replaced (`--overwrite`).
    Overwritten,
    /// Dry run: exists and would be replaced.
    WouldOverwrite,
    /// Kept object: the removed metadata was put back.
    PutBack,
    /// Dry run: the removed metadata would be put back.
    WouldPutBack,
    /// Kept object: everything removed is already there.
    NothingToPutBack,
    /// Kept object that no longer exists: nothing to put back onto.
    Missing,
    /// The request failed.
    Failed {
        /// The server's message.
        message: String,
    },
}

impl Outcome {
    /// Short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::WouldCreate => "would create",
            Outcome::Exists => "exists, left alone",
            Outcome::Overwritten => "overwritten",
            Outcome::WouldOverwrite => "would overwrite",
            Outcome::PutBack => "metadata put back",
            Outcome::WouldPutBack => "would put back metadata",
            Outcome::NothingToPutBack => "metadata already there",
            Outcome::Missing => "missing, not restored",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One object's restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemReport {
    /// `Kind.group namespace/name`.
    pub object: String,
    /// Its stage.
    pub stage: Stage,
    /// What happened.
    pub outcome: Outcome,
    /// Owner references left out because their owner does not exist
    /// (`Kind/name`).
    pub dropped_owners: Vec<String>,
    /// Entries a kept object now has with another value (left as they are).
    pub conflicts: Vec<String>,
    /// Whether it was Terminating when backed up (it comes back live).
    pub was_terminating: bool,
}

/// The whole restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// One report per archived object, in restore order.
    pub items: Vec<ItemReport>,
    /// Wall time.
    pub duration: Duration,
}

impl RestoreReport {
    /// Objects with `outcome`'s label.
    pub fn count(&self, label: &str) -> usize {
        self.items
            .iter()
            .filter(|i| i.outcome.label() == label)
            .count()
    }

    /// The failed items.
    pub fn failures(&self) -> impl Iterator<Item = &ItemReport> {
        self.items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Failed { .. }))
    }

    /// Whether nothing failed.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Errors that stop a restore before it starts.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The served APIs could not be read.
    #[error("failed to discover the served APIs")]
    Discovery(#[from] ApiDiscoveryError),
}

/// Restores a verified archive.
pub async fn restore(
    client: &Client,
    archive: &Archive,
    options: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let start = Instant::now();
    let mut catalog = discover_api(client).await?;
    let plain_status = order::kinds_with_plain_status(archive);
    let status_subresource = order::kinds_with_status_subresource(archive);
    let mut new_uids: HashMap<String, String> = HashMap::new();
    let mut items = Vec::new();
    let concurrency = options.concurrency.max(1);
    let mut crds_restored = false;
    for wave in order::waves(archive) {
        if wave.stage != Stage::Crds && crds_restored {
            // Restored CRDs serve new types: learn their plurals and scopes.
            catalog = discover_api(client).await?;
            crds_restored = false;
        }
        let ctx = Ctx {
            client,
            options,
            catalog: &catalog,
            new_uids: &new_uids,
            plain_status: &plain_status,
            status_subresource: &status_subresource,
        };
        let results: Vec<(ItemReport, Option<(String, String)>)> =
            futures::stream::iter(wave.objects.iter().map(|&i| &archive.objects[i]))
                .map(|stored| ctx.restore_one(stored, wave.stage))
                .buffered(concurrency)
                .collect()
                .await;
        for (report, uid) in results {
            if let Some((old, new)) = uid {
                new_uids.insert(old, new);
            }
            items.push(report);
        }
        if wave.stage == Stage::Crds {
            crds_restored = true;
            if !options.dry_run {
                let names: Vec<&str> = wave
                    .objects
                    .iter()
                    .map(|&i| archive.objects[i].entry.name.as_str())
                    .collect();
                wait_established(client, &names, options.crd_timeout, &mut items).await;
            }
        }
    }
    Ok(RestoreReport {
        items,
        duration: start.elapsed(),
    })
}

struct Ctx<'a> {
    client: &'a Client,
    options: &'a RestoreOptions,
    catalog: &'a ApiCatalog,
    new_uids: &'a HashMap<String, String>,
    plain_status: &'a HashSet<(String, String)>,
    status_subresource: &'a HashSet<(String, String)>,
}

impl Ctx<'_> {
    async fn restore_one(
        &self,
        stored: &StoredObject,
        stage: Stage,
    ) -> (ItemReport, Option<(String, String)>) {
        let mut report = ItemReport {
            object: stored.entry.display_name(),
            stage,
            outcome: Outcome::Exists,
            dropped_owners: Vec::new(),
            conflicts: Vec::new(),
            was_terminating: stored.entry.terminating,
        };
        let uid = match stored.entry.restore {
            RestoreMode::Recreate => self.recreate(stored, &mut report).await,
            RestoreMode::PutBack => {
                self.put_back(stored, &mut report).await;
                None
            }
        };
        (report, uid.map(|new| (stored.entry.uid.clone(), new)))
    }

    /// Resolves owner references to live owners: by re-created UID, else by
    /// kind and name in the cluster.
    async fn remap(&self, object: &mut Value, namespace: Option<&str>) -> Vec<String> {
        let mut live: HashMap<String, String> = HashMap::new();
        for r in order::owner_references(object) {
            let old = r.get("uid").and_then(Value::as_str).unwrap_or_default();
            if self.new_uids.contains_key(old) {
                continue;
            }
            if let Some(uid) = self.find_owner(&r, namespace).await {
                live.insert(old.to_owned(), uid);
            }
        }
        let dropped = order::remap_owner_references(object, self.new_uids, |r| {
            let old = r.get("uid").and_then(Value::as_str).unwrap_or_default();
            live.get(old).cloned()
        });
        dropped
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r.get("kind").and_then(Value::as_str).unwrap_or("?"),
                    r.get("name").and_then(Value::as_str).unwrap_or("?")
                )
            })
            .collect()
    }

    async fn find_owner(&self, reference: &Value, namespace: Option<&str>) -> Option<String> {
        let api_version = reference.get("apiVersion")?.as_str()?;
        let kind = reference.get("kind")?.as_str()?;
        let name = reference.get("name")?.as_str()?;
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let served = self.catalog.find_kind(group, kind)?;
        let ns = if served.resource.namespaced {
            namespace
        } else {
            None
        };
        let api = dynamic_api(self.client, &served.resource, ns);
        let found = retry::with_retry(&RetryPolicy::standard(), "get owner", || api.get_opt(name))
            .await
            .ok()??;
        found.metadata.uid
    }

    async fn recreate(&self, stored: &StoredObject, report: &mut ItemReport) -> Option<String> {
        let entry = &stored.entry;
        let api = dynamic_api(self.client, &entry.resource, entry.namespace.as_deref());
        let keep_status = self
            .plain_status
            .contains(&(entry.resource.group.clone(), entry.kind.clone()));
        let mut object = order::prepare_for_create(&stored.object, keep_status);
        report.dropped_owners = self.remap(&mut object, entry.namespace.as_deref()).await;

        let existing =
            match retry::with_retry(&RetryPolicy::standard(), "get", || api.get_opt(&entry.name))
                .await
            {
                Ok(found) => found,
                // The type is not served (its CRD is missing): it cannot exist.
                Err(e) if retry::is_not_found(&e) => None,
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: error_message(&e),
                    };
                    return None;
                }
            };
        if let Some(live) = existing {
            let live_uid = live.metadata.uid.clone();
            if !self.options.overwrite {
                report.outcome = Outcome::Exists;
                return live_uid;
            }
            if self.options.dry_run {
                report.outcome = Outcome::WouldOverwrite;
                return live_uid;
            }
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert(
                    "resourceVersion".into(),
                    live.metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default()
                        .into(),
                );
            }
            let desired: DynamicObject = match serde_json::from_value(object) {
                Ok(o) => o,
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: e.to_string(),
                    };
                    return None;
                }
            };
            return match api
                .replace(&entry.name, &PostParams::default(), &desired)
                .await
            {
                Ok(replaced) => {
                    report.outcome = Outcome::Overwritten;
                    replaced.metadata.uid
                }
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: error_message(&e),
                    };
                    live_uid
                }
            };
        }
        if self.options.dry_run {
            report.outcome = Outcome::WouldCreate;
            return None;
        }
        let desired: DynamicObject = match serde_json::from_value(object) {
            Ok(o) => o,
            Err(e) => {
                report.outcome = Outcome::Failed {
                    message: e.to_string(),
                };
                return None;
            }
        };
        // Right after a CRD is Established its type may answer 404 for a
        // moment, and a namespace just created may not accept content yet.
        let deadline = Instant::now() + Duration::from_secs(15);
        let params = PostParams::default();
        loop {
            let created = retry::with_retry(&RetryPolicy::standard(), "create", || {
                api.create(&params, &desired)
            })
            .await;
            match created {
                Ok(created) => {
                    report.outcome = self.write_status_back(stored, &api).await;
                    return created.metadata.uid;
                }
                Err(e) if retry::is_not_found(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) if retry::is_conflict(&e) => {
                    // Created concurrently since our read.
                    report.outcome = Outcome::Exists;
                    return api.get_opt(&entry.name).await.ok().flatten()?.metadata.uid;
                }
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: error_message(&e),
                    };
                    return None;
                }
            }
        }
    }

    /// The archived `status` of a custom resource whose type has a status
    /// subresource, written back after the create (which ignores it): a
    /// restored object says what it said when it was backed up (an
    /// InstallPlan's state, a Cluster's conditions).
    async fn write_status_back(&self, stored: &StoredObject, api: &Api<DynamicObject>) -> Outcome {
        let entry = &stored.entry;
        let has_subresource = self
            .status_subresource
            .contains(&(entry.resource.group.clone(), entry.kind.clone()));
        let Some(status) = stored.object.get("status").filter(|_| has_subresource) else {
            return Outcome::Created;
        };
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        let params = PatchParams::default();
        match retry::with_retry(&RetryPolicy::standard(), "write status", || {
            api.patch_status(&entry.name, &params, &patch)
        })
        .await
        {
            Ok(_) => Outcome::Created,
            Err(e) => Outcome::Failed {
                message: format!(
                    "created, but its status could not be written back: {}",
                    error_message(&e)
                ),
            },
        }
    }

    async fn put_back(&self, stored: &StoredObject, report: &mut ItemReport) {
        let entry = &stored.entry;
        let Some(removed) = entry.removed.clone().filter(|r| !r.is_empty()) else {
            report.outcome = Outcome::NothingToPutBack;
            return;
        };
        let api = dynamic_api(self.client, &entry.resource, entry.namespace.as_deref());
        let mut owners =
            serde_json::json!({"metadata": {"ownerReferences": removed.owner_references}});
        report.dropped_owners = self.remap(&mut owners, entry.namespace.as_deref()).await;
        let owners = order::owner_references(&owners);
        // A concurrent writer changes the resourceVersion the patch tests:
        // re-read and recompute a few times.
        for _ in 0..5 {
            let live = match api.get_opt(&entry.name).await {
                Ok(Some(live)) => live,
                Ok(None) => {
                    report.outcome = Outcome::Missing;
                    return;
                }
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: error_message(&e),
                    };
                    return;
                }
            };
            let live = serde_json::to_value(&live).unwrap_or(Value::Null);
            let (ops, conflicts) = order::put_back_patch(&live, &removed, &owners);
            report.conflicts = conflicts;
            let Some(ops) = ops else {
                report.outcome = Outcome::NothingToPutBack;
                return;
            };
            if self.options.dry_run {
                report.outcome = Outcome::WouldPutBack;
                return;
            }
            let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                Ok(p) => p,
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: e.to_string(),
                    };
                    return;
                }
            };
            match api
                .patch(
                    &entry.name,
                    &PatchParams::default(),
                    &Patch::Json::<()>(patch),
                )
                .await
            {
                Ok(_) => {
                    report.outcome = Outcome::PutBack;
                    return;
                }
                // A failed `test` (the object changed since our read) comes
                // back as 409 or 422 depending on the server version.
                Err(e) if matches!(retry::status_code(&e), Some(409 | 422)) => continue,
                Err(e) => {
                    report.outcome = Outcome::Failed {
                        message: error_message(&e),
                    };
                    return;
                }
            }
        }
        report.outcome = Outcome::Failed {
            message: "the object kept changing while its metadata was put back".into(),
        };
    }
}

/// Waits until every named CRD is Established; marks those that are not in
/// time as failed (their instances would fail anyway, with a worse message).
async fn wait_established(
    client: &Client,
    names: &[&str],
    timeout: Duration,
    items: &mut [ItemReport],
) {
    let api = dynamic_api(client, &types::crd(), None);
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&str> = names.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for name in pending {
            let established = match api.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.get("type").and_then(Value::as_str) == Some("Established")
                                && c.get("status").and_then(Value::as_str) == Some("True")
                        })
                    }),
                _ => false,
            };
            if !established {
                still.push(name);
            }
        }
        pending = still;
        if pending.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in pending {
        if let Some(item) = items
            .iter_mut()
            .rev()
            .find(|i| i.stage == Stage::Crds && i.object.ends_with(&format!(" {name}")))
            && !matches!(item.outcome, Outcome::Failed { .. })
        {
            item.outcome = Outcome::Failed {
                message: format!("not Established within {}s", timeout.as_secs()),
            };
        }
    }
}
