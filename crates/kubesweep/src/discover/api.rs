//! API discovery that survives broken groups, and paged LISTs of dynamic objects.
//!
//! kube-rs `Discovery::run()` fails as a whole when one aggregated group
//! answers 503 (an APIService whose Service is gone). We walk `/api` and
//! `/apis` ourselves, ask every group-version separately and concurrently, and
//! record each failing one as a [`BrokenGroupVersion`] instead of failing.
//!
//! A [`CatalogCache`] lets a second discovery in the same process (the
//! re-plan right before `apply`'s first change) reuse the group-version
//! documents of the first one. `/api` and `/apis` are always read again;
//! a group-version document is reused only when every CRD and APIService
//! is the same object at the same resourceVersion as when it was read (an
//! [`ApiFingerprint`]: a CRD created, deleted, edited or newly established,
//! an APIService added, removed, repointed or changing availability all
//! change it), when it was read without error, and when no APIService
//! serves it through a Service (an aggregated server may change what it
//! serves without its APIService changing). Built-in group-versions change
//! only with the API server's version, which the root documents show.

use std::collections::{BTreeMap, BTreeSet};

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

/// The UID and resourceVersion of every CRD and APIService: while it stays
/// the same, no CRD-backed or locally served group-version changed what it
/// serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiFingerprint {
    /// (kind, name, uid, resourceVersion), sorted.
    objects: BTreeSet<(&'static str, String, String, String)>,
    /// `group/version` of every APIService backed by a Service.
    aggregated: BTreeSet<String>,
}

impl ApiFingerprint {
    /// The fingerprint of the CRD and APIService lists. Pure.
    pub fn of(crds: &[DynamicObject], api_services: &[DynamicObject]) -> Self {
        let mut fingerprint = ApiFingerprint::default();
        for (kind, list) in [("crd", crds), ("apiservice", api_services)] {
            for object in list {
                fingerprint.objects.insert((
                    kind,
                    object.metadata.name.clone().unwrap_or_default(),
                    object.metadata.uid.clone().unwrap_or_default(),
                    object.metadata.resource_version.clone().unwrap_or_default(),
                ));
            }
        }
        for service in api_services {
            let spec = service.data.get("spec");
            let backed = spec
                .and_then(|s| s.get("service"))
                .is_some_and(|s| !s.is_null());
            let group = spec.and_then(|s| s.get("group")).and_then(|g| g.as_str());
            let version = spec.and_then(|s| s.get("version")).and_then(|v| v.as_str());
            if let (true, Some(group), Some(version)) = (backed, group, version) {
                fingerprint.aggregated.insert(format!("{group}/{version}"));
            }
        }
        fingerprint
    }
}

/// Group-version documents of an earlier discovery, for the next one in the
/// same process (see the module comment for when they are reused).
#[derive(Clone, Debug, Default)]
pub struct CatalogCache {
    last: Option<CachedDocuments>,
}

#[derive(Clone, Debug)]
struct CachedDocuments {
    fingerprint: ApiFingerprint,
    /// Resources of every group-version read without error, by (group, version).
    documents: BTreeMap<(String, String), Vec<ServedResource>>,
}

impl CatalogCache {
    /// The document of `group`/`version` to reuse under `fingerprint`, if
    /// any. Pure.
    fn reusable(
        &self,
        fingerprint: Option<&ApiFingerprint>,
        group: &str,
        version: &str,
    ) -> Option<&Vec<ServedResource>> {
        let last = self.last.as_ref()?;
        let fingerprint = fingerprint?;
        if last.fingerprint != *fingerprint
            || fingerprint
                .aggregated
                .contains(&format!("{group}/{version}"))
        {
            return None;
        }
        last.documents.get(&(group.to_owned(), version.to_owned()))
    }

    /// How many group-version documents the cache holds.
    pub fn documents(&self) -> usize {
        self.last.as_ref().map_or(0, |l| l.documents.len())
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
    discover_api_cached(client, &mut CatalogCache::default(), None).await
}

/// [`discover_api`], reusing the documents `cache` holds where
/// `fingerprint` (of the CRDs and APIServices listed right before) allows,
/// and leaving this discovery's documents in `cache`. Without a
/// fingerprint nothing is reused and the cache is emptied.
pub async fn discover_api_cached(
    client: &Client,
    cache: &mut CatalogCache,
    fingerprint: Option<ApiFingerprint>,
) -> Result<ApiCatalog, ApiDiscoveryError> {
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

    // Documents reused from the cache, and the group-versions to read.
    let mut reused: Vec<(String, String, Vec<ServedResource>)> = Vec::new();
    targets.retain(
        |(group, version)| match cache.reusable(fingerprint.as_ref(), group, version) {
            Some(document) => {
                reused.push((group.clone(), version.clone(), document.clone()));
                false
            }
            None => true,
        },
    );
    if !reused.is_empty() {
        tracing::debug!(
            reused = reused.len(),
            read = targets.len(),
            "API discovery reuses group-version documents: no CRD or APIService changed"
        );
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
    let mut documents: BTreeMap<(String, String), Vec<ServedResource>> = BTreeMap::new();
    for (group, version, gv, listed) in results {
        match listed {
            Ok(list) => {
                let document = list
                    .resources
                    .into_iter()
                    // Subresources (`pods/status`) are not objects of their own.
                    .filter(|r| !r.name.contains('/'))
                    .map(|r| ServedResource {
                        resource: ResourceType {
                            group: group.clone(),
                            version: version.clone(),
                            kind: r.kind,
                            plural: r.name,
                            namespaced: r.namespaced,
                        },
                        verbs: r.verbs,
                    })
                    .collect();
                documents.insert((group, version), document);
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
    for (group, version, document) in reused {
        documents.insert((group, version), document);
    }
    // Sorted output keeps plans and reports stable across runs.
    let mut resources: BTreeMap<(String, String), ServedResource> = BTreeMap::new();
    for document in documents.values() {
        for r in document {
            resources.insert(
                (r.resource.group.clone(), r.resource.plural.clone()),
                r.clone(),
            );
        }
    }
    catalog.resources = resources.into_values().collect();
    catalog
        .broken
        .sort_by(|a, b| a.group_version.cmp(&b.group_version));
    cache.last = fingerprint.map(|fingerprint| CachedDocuments {
        fingerprint,
        documents,
    });
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

    fn object(name: &str, uid: &str, rv: &str, data: serde_json::Value) -> DynamicObject {
        let mut o =
            DynamicObject::new(name, &crate::inventory::types::crd().api_resource()).data(data);
        o.metadata.uid = Some(uid.into());
        o.metadata.resource_version = Some(rv.into());
        o
    }

    fn cache_under(fingerprint: &ApiFingerprint) -> CatalogCache {
        let served = |group: &str| ServedResource {
            resource: ResourceType {
                group: group.into(),
                version: "v1".into(),
                kind: "Thing".into(),
                plural: "things".into(),
                namespaced: true,
            },
            verbs: vec!["list".into()],
        };
        CatalogCache {
            last: Some(CachedDocuments {
                fingerprint: fingerprint.clone(),
                documents: [
                    (("".into(), "v1".into()), vec![served("")]),
                    (("apps".into(), "v1".into()), vec![served("apps")]),
                    (
                        ("tenant.kubesphere.io".into(), "v1".into()),
                        vec![served("x")],
                    ),
                    (
                        ("metrics.example.com".into(), "v1".into()),
                        vec![served("m")],
                    ),
                ]
                .into_iter()
                .collect(),
            }),
        }
    }

    #[test]
    fn documents_are_reused_only_under_the_same_crds_and_api_services() {
        let crd = object(
            "workspaces.tenant.kubesphere.io",
            "u1",
            "10",
            serde_json::json!({}),
        );
        let aggregated = object(
            "v1.metrics.example.com",
            "u2",
            "20",
            serde_json::json!({"spec": {"group": "metrics.example.com", "version": "v1",
                "service": {"name": "metrics", "namespace": "x"}}}),
        );
        let local = object(
            "v1.apps",
            "u3",
            "30",
            serde_json::json!({"spec": {"group": "apps", "version": "v1", "service": null}}),
        );
        let before = ApiFingerprint::of(
            std::slice::from_ref(&crd),
            &[aggregated.clone(), local.clone()],
        );
        let cache = cache_under(&before);
        assert_eq!(cache.documents(), 4);

        // Nothing changed: built-in and CRD documents are reused, and the
        // aggregated one is read again all the same.
        assert!(cache.reusable(Some(&before), "", "v1").is_some());
        assert!(cache.reusable(Some(&before), "apps", "v1").is_some());
        assert!(
            cache
                .reusable(Some(&before), "tenant.kubesphere.io", "v1")
                .is_some()
        );
        assert!(
            cache
                .reusable(Some(&before), "metrics.example.com", "v1")
                .is_none()
        );
        // Another preferred version, or a group-version not read (or broken) before.
        assert!(cache.reusable(Some(&before), "apps", "v2").is_none());
        assert!(
            cache
                .reusable(Some(&before), "new.example.com", "v1")
                .is_none()
        );
        // No fingerprint: nothing is reused.
        assert!(cache.reusable(None, "apps", "v1").is_none());

        // A CRD edited or established (new resourceVersion), re-created
        // (new UID), added or deleted; an APIService changing availability:
        // nothing is reused.
        let edited = object(
            "workspaces.tenant.kubesphere.io",
            "u1",
            "11",
            serde_json::json!({}),
        );
        let recreated = object(
            "workspaces.tenant.kubesphere.io",
            "u9",
            "10",
            serde_json::json!({}),
        );
        let added = object("users.iam.kubesphere.io", "u4", "40", serde_json::json!({}));
        let mut back = aggregated.clone();
        back.metadata.resource_version = Some("21".into());
        let services = [aggregated.clone(), local.clone()];
        for changed in [
            ApiFingerprint::of(std::slice::from_ref(&edited), &services),
            ApiFingerprint::of(std::slice::from_ref(&recreated), &services),
            ApiFingerprint::of(&[crd.clone(), added], &services),
            ApiFingerprint::of(&[], &services),
            ApiFingerprint::of(std::slice::from_ref(&crd), &[back, local.clone()]),
            ApiFingerprint::of(std::slice::from_ref(&crd), std::slice::from_ref(&local)),
        ] {
            assert_ne!(changed, before);
            assert!(cache.reusable(Some(&changed), "apps", "v1").is_none());
            assert!(cache.reusable(Some(&changed), "", "v1").is_none());
        }
    }

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
