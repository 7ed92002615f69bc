//! Taking a backup for a plan, end to end: the plan's targets from the
//! inventory read right before execution, the content of the namespaces it
//! deletes, encoded, written durably and verified. `apply` calls this before
//! its first mutation and stops if it fails.

use std::collections::HashSet;

use kube::Client;

use super::archive::{self, ArchiveError, MetadataInput};
use super::collect::{self, BackupObject, CollectError};
use super::content::{self, ContentError};
use super::file::{self, BackupFileError, Destination, WrittenBackup};
use super::redact;
use crate::inventory::Inventory;
use crate::plan::Plan;

/// Why a backup could not be taken; nothing may be changed then.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// A planned object is not in the inventory.
    #[error("the backup would be incomplete")]
    Collect(#[from] CollectError),
    /// The content of a namespace being deleted could not be read.
    #[error("the backup would be incomplete")]
    Content(#[from] ContentError),
    /// The archive could not be built.
    #[error("failed to build the backup archive")]
    Archive(#[from] ArchiveError),
    /// The file could not be written or verified.
    #[error(transparent)]
    File(#[from] BackupFileError),
}

/// Backs up everything `plan` deletes or changes, as `inventory` holds it
/// (plus the content of the namespaces it deletes, listed now), to
/// `destination`, encrypted when `recipients` are given. Without recipients,
/// other clusters' credentials (a host's member kubeconfigs) are left out
/// (see [`redact`]).
///
/// The inventory is consumed: its objects are converted for the archive one
/// by one and dropped (a caller that needs it afterwards clones it).
pub async fn take(
    client: &Client,
    plan: &Plan,
    inventory: Inventory,
    destination: &Destination,
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<WrittenBackup, TakeError> {
    // Listed first: the listing needs the inventory's types and issues.
    let namespaces = collect::deleted_namespaces(plan);
    let (content, incomplete) = content::namespace_content(client, &inventory, &namespaces).await?;
    crate::memory::log_stage("backup: namespace content listed");
    let mut objects = collect::plan_objects_owned(plan, inventory)?;
    crate::memory::log_stage("backup: plan objects collected");
    complete_kept_objects(client, &mut objects).await;
    crate::memory::log_stage("backup: kept objects read whole");
    let known: HashSet<String> = objects.iter().map(|o| o.uid().to_owned()).collect();
    objects.extend(content.into_iter().filter(|o| !known.contains(o.uid())));
    if recipients.is_empty() {
        for (object, fields) in redact::redact_secret_fields(&mut objects) {
            // Names only: the values are the point of leaving them out.
            tracing::warn!(
                "the backup is not encrypted: {object} is stored without {} (another cluster's credentials; pass --encrypt-to to keep them)",
                fields.join(", ")
            );
        }
    }
    let input = MetadataInput {
        cluster: plan.cluster.clone(),
        profile: plan.profile.clone(),
        plan_digest: plan.digest(),
        incomplete,
    };
    // Streamed: the archive goes to the file object by object, never whole
    // in memory (at 50,000 objects it would be several times the inventory).
    let prepared = archive::prepare(&objects, &input)?;
    crate::memory::log_stage("backup: archive prepared");
    let written = file::write_backup_with(
        destination,
        &plan.cluster.kube_system_uid,
        |out| prepared.write_to(&objects, out).map(drop),
        recipients,
    )?;
    crate::memory::log_stage("backup: written and verified");
    Ok(written)
}

/// Kept objects are discovered metadata only; the archive stores them whole
/// for reference (restore only puts back the removed metadata), so read them
/// now. One that is gone or was re-created keeps the metadata that was seen.
async fn complete_kept_objects(client: &Client, objects: &mut [BackupObject]) {
    for o in objects.iter_mut().filter(|o| o.metadata_only()) {
        let api = crate::discover::dynamic_api(client, &o.resource, o.namespace());
        let Ok(Some(full)) = api.get_opt(o.name()).await else {
            continue;
        };
        if full.metadata.uid.as_deref() != Some(o.uid()) {
            continue;
        }
        let mut value = serde_json::to_value(&full).unwrap_or_default();
        if let (Some(map), Some(meta)) = (value.as_object_mut(), o.object.get("metadata")) {
            // The metadata stays as the plan saw it, the rest is added.
            map.insert("metadata".into(), meta.clone());
            map.insert("apiVersion".into(), o.resource.api_version().into());
            map.insert("kind".into(), o.resource.kind.clone().into());
            o.object = value;
        }
    }
}
