//! Cluster I/O of taking a backup: the content of the namespaces a plan
//! deletes. The plan names a namespace, not what is in it, yet deleting it
//! destroys its Secrets, ConfigMaps, workloads and RBAC; so every namespaced
//! type that can be listed and created again is listed in those namespaces,
//! right before execution, leaving out what controllers re-create on their own.

use futures::StreamExt;
use kube::Client;

use super::collect::{BackupObject, skip_namespace_content};
use super::format::{RestoreMode, Source};
use crate::discover::{error_message, list_in_namespaces};
use crate::inventory::{DiscoveryIssue, Inventory};
use crate::resource::ResourceType;

/// How many types are listed at the same time.
const CONCURRENCY: usize = 8;

/// Why the content of the deleted namespaces could not be read completely.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Listing a served type failed: the backup would miss its objects.
    #[error("failed to list {resource} in the namespaces being deleted")]
    List {
        /// `plural.group`.
        resource: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// The content of `namespaces`, listed as every namespaced type of
/// `inventory` (discovery's catalog, read moments ago: reusing it spares a
/// second discovery, slow when an aggregated API is down), and the
/// group-versions that could not be read (an aggregated API whose backend is
/// gone stores nothing in the cluster, so it is reported, not fatal).
pub async fn namespace_content(
    client: &Client,
    inventory: &Inventory,
    namespaces: &[String],
) -> Result<(Vec<BackupObject>, Vec<String>), ContentError> {
    if namespaces.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let incomplete: Vec<String> = inventory
        .issues
        .iter()
        .filter_map(|i| match i {
            DiscoveryIssue::ApiGroupUnavailable {
                group_version,
                message,
            } => Some(format!("{group_version}: {message}")),
            DiscoveryIssue::ListFailed { .. } => None,
        })
        .collect();
    let types: Vec<ResourceType> = inventory
        .resource_types
        .iter()
        .filter(|r| r.namespaced)
        // Kubernetes' create-only types (`bindings`, access reviews): the
        // authorizer answers a list of them with 403 before the server's 405.
        .filter(|r| crate::rbac::builtin::is_listable(&r.group, &r.plural))
        .cloned()
        .collect();
    let listed: Vec<_> = futures::stream::iter(types)
        .map(|rt| async move {
            let result = list_in_namespaces(client, &rt, namespaces, None).await;
            (rt, result)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    for (rt, result) in listed {
        let objects = match result {
            Ok(objects) => objects,
            // Not listable (405: a virtual type such as a review), or
            // removed meanwhile (404): it holds nothing to back up.
            Err(e) if matches!(crate::retry::status_code(&e), Some(404 | 405)) => {
                tracing::debug!(resource = %rt, error = %error_message(&e), "type not listable; skipped");
                continue;
            }
            Err(source) => {
                return Err(ContentError::List {
                    resource: rt.qualified_plural(),
                    source,
                });
            }
        };
        for object in objects {
            if skip_namespace_content(&rt, &object) {
                continue;
            }
            let ns = object.metadata.namespace.clone().unwrap_or_default();
            out.push(BackupObject::from_dynamic(
                &rt,
                &object,
                vec![format!("deleted with namespace {ns}")],
                Source::NamespaceContent,
                RestoreMode::Recreate,
            ));
        }
    }
    Ok((out, incomplete))
}
