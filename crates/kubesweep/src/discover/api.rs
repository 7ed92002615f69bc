//! API discovery that survives broken groups, and paged LISTs of dynamic objects.
//!
//! kube-rs `Discovery::run()` fails as a whole when one aggregated group
//! answers 503 (an APIService whose Service is gone). We walk `/api` and
//! `/apis` ourselves, ask every group-version separately and concurrently, and
//! record each failing one as a [`BrokenGroupVersion`] instead of failing.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use serde::{Deserialize, Serialize};

use crate::resource::ResourceType;
use crate::retry::{self, RetryPolicy};

/// Page size of every LIST: large enough to keep round trips few, small
/// enough that one response never holds a large CRD collection at once.
pub const PAGE_SIZE: u32 = 500;

/// How many group-versions are asked at the same time.
const DISCOVERY_CONCURRENCY: usize = 16;

/// A served resource type and the verbs the server allows on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedResource {
    /// The type, at the group's preferred version.
    pub resource: ResourceType,
    /// Verbs from discovery (`list`, `delete`, `deletecollection`, `patch`...).
    pub verbs: Vec<String>,
}

/// A group-version whose discovery document could not be read. For an
/// aggregated API this usually means its APIService's backend is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenGroupVersion {
    /// `group/version`, e.g. `metrics.k8s.io/v1beta1`.
    pub group_version: String,
    /// HTTP status, when the server answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// What the server (or the transport) said.
    pub message: String,
}

impl BrokenGroupVersion {
    /// Name of the APIService that serves this group-version (`v1beta1.metrics.k8s.io`).
    pub fn api_service_name(&self) -> String {
        match self.group_version.split_once('/') {
            Some((group, version)) => format!("{version}.{group}"),
            None => format!("{}.", self.group_version),
        }
    }
}

/// What the server serves, as far as it could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCatalog {
    /// Served top-level resources (no subresources), keyed by nothing in particular;
    /// use the lookup helpers.
    pub resources: Vec<ServedResource>,
    /// Group-versions that failed discovery.
    pub broken: Vec<BrokenGroupVersion>,
}

impl ApiCatalog {
    /// The served type for `group` + `plural` (at the preferred version).
    pub fn find(&self, group: &str, plural: &str) -> Option<&ServedResource> {
        self.resources
            .iter()
            .find(|r| r.resource.group == group && r.resource.plural == plural)
    }

    /// The served type for `group` + `kind` (at the preferred version).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ServedResource> {
        self.resources
            .iter()
            .find(|r| r.resource.group == group && r.resource.kind == kind)
    }

    /// Whether `group` is one that failed discovery.
    pub fn is_broken_group(&self, group: &str) -> bool {
        self.broken
            .iter()
            .any(|b| b.group_version.split_once('/').map(|(g, _)| g) == Some(group))
    }
}

/// Errors that stop discovery as a whole (the root documents themselves fail).
#[derive(Debug, thiserror::Error)]
pub enum ApiDiscoveryError {
    /// `/api` or `/apis` could not be read.
    #[error("failed to read the API root {path}")]
    Root {
        /// `/api` or `/apis`.
        path: &'static str,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// Reads every group's preferred version, group-version by group-version.
pub async fn discover_api(client: &Client) -> Result<ApiCatalog, ApiDiscoveryError> {
    let probe = RetryPolicy::quick();
    let core = retry::with_retry(&RetryPolicy::standard(), "GET /api", || {
        client.list_core_api_versions()
    })
    .await
    .map_err(|source| ApiDiscoveryError::Root {
        path: "/api",
        source,
    })?;
    let groups = retry::with_retry(&RetryPolicy::standard(), "GET /apis", || {
        client.list_api_groups()
    })
    .await
    .map_err(|source| ApiDiscoveryError::Root {
        path: "/apis",
        source,
    })?;

    // (group, version) pairs to ask; the core group is "" and lives under /api.
    let mut targets: Vec<(String, String)> = Vec::new();
    if let Some(v) = core
        .versions
        .iter()
        .find(|v| v.as_str() == "v1")
        .or(core.versions.first())
    {
        targets.push((String::new(), v.clone()));
    }
    for group in &groups.groups {
        let Some(version) = group.preferred_version.as_ref().or(group.versions.first()) else {
            continue;
        };
        targets.push((group.name.clone(), version.version.clone()));
    }

    let results: Vec<_> = futures::stream::iter(targets)
        .map(|(group, version)| {
            let probe = probe.clone();
            async move {
                let gv = if group.is_empty() {
                    version.clone()
                } else {
                    format!("{group}/{version}")
                };
                let listed = if group.is_empty() {
                    retry::with_retry(&probe, &gv, || client.list_core_api_resources(&version))
                        .await
                } else {
                    retry::with_retry(&probe, &gv, || client.list_api_group_resources(&gv)).await
                };
                (group, version, gv, listed)
            }
        })
        .buffer_unordered(DISCOVERY_CONCURRENCY)
        .collect()
        .await;

    let mut catalog = ApiCatalog::default();
    // Sorted output keeps plans and reports stable across runs.
    let mut resources: BTreeMap<(String, String), ServedResource> = BTreeMap::new();
    for (group, version, gv, listed) in results {
        match listed {
            Ok(list) => {
                for r in list.resources {
                    // Subresources (`pods/status`) are not objects of their own.
                    if r.name.contains('/') {
                        continue;
                    }
                    let resource = ResourceType {
                        group: group.clone(),
                        version: version.clone(),
                        kind: r.kind,
                        plural: r.name.clone(),
                        namespaced: r.namespaced,
                    };
                    resources.insert(
                        (group.clone(), r.name),
                        ServedResource {
                            resource,
                            verbs: r.verbs,
                        },
                    );
                }
            }
            Err(err) => {
                tracing::warn!(group_version = %gv, error = %err, "API group-version failed discovery; continuing without it");
                catalog.broken.push(BrokenGroupVersion {
                    group_version: gv,
                    status_code: retry::status_code(&err),
                    message: error_message(&err),
                });
            }
        }
    }
    catalog.resources = resources.into_values().collect();
    catalog
        .broken
        .sort_by(|a, b| a.group_version.cmp(&b.group_version));
    Ok(catalog)
}

/// The server's message for API errors, the error chain otherwise.
pub fn error_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// A dynamic API handle for a type, namespaced or cluster-wide.
pub fn dynamic_api(
    client: &Client,
    resource: &ResourceType,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = resource.api_resource();
    match namespace {
        Some(ns) if resource.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Lists every object of a type (in one namespace, or all namespaces when
/// `namespace` is `None`), page by page. `label_selector` narrows the list on
/// the server. An expired continue token (410 Gone, the list took longer than
/// etcd compaction allows) restarts the list once from scratch.
pub async fn list_all(
    client: &Client,
    resource: &ResourceType,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let api = dynamic_api(client, resource, namespace);
    let mut restarted = false;
    'restart: loop {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(PAGE_SIZE);
            if let Some(selector) = label_selector {
                params = params.labels(selector);
            }
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let what = format!("list {resource}");
            let page = match retry::with_retry(&RetryPolicy::standard(), &what, || {
                api.list(&params)
            })
            .await
            {
                Ok(page) => page,
                Err(err) if retry::status_code(&err) == Some(410) && !restarted => {
                    tracing::debug!(%resource, "continue token expired; restarting list");
                    restarted = true;
                    continue 'restart;
                }
                Err(err) => return Err(err),
            };
            out.extend(page.items);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// Like [`list_all`] over several namespaces at once, with bounded concurrency.
pub async fn list_in_namespaces(
    client: &Client,
    resource: &ResourceType,
    namespaces: &[String],
    label_selector: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let pages: Vec<Vec<DynamicObject>> = futures::stream::iter(namespaces.iter())
        .map(|ns| list_all(client, resource, Some(ns), label_selector))
        .buffer_unordered(DISCOVERY_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(pages.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_service_name_of_group_version() {
        let b = BrokenGroupVersion {
            group_version: "metrics.k8s.io/v1beta1".into(),
            status_code: Some(503),
            message: String::new(),
        };
        assert_eq!(b.api_service_name(), "v1beta1.metrics.k8s.io");
    }
}
