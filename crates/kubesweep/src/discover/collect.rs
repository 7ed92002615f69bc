//! Profile-driven collection: lists exactly the kinds of objects the profile
//! can match and hands them to the planner as an [`Inventory`]. Ownership
//! decisions stay in [`crate::profile`]; here we only choose *what to list*
//! (and prefer listing a little too much over missing something, which the
//! inventory contract allows).

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, TypeMeta};

use super::api::{self, ApiCatalog, ApiDiscoveryError, ApiFingerprint, CatalogCache};
use crate::inventory::{
    ClusterIdentity, CrdInventory, DiscoveryIssue, Inventory, ObservedList, types,
};
use crate::profile::Profile;
use crate::resource::ResourceType;
use crate::retry::{self, RetryPolicy};

/// How many LISTs run at the same time during collection.
const LIST_CONCURRENCY: usize = 8;

/// Types never scanned for platform metadata on kept objects: high-volume,
/// short-lived, and never labelled by a platform (events, leases, endpoint
/// bookkeeping), so scanning them would only cost time.
const SKIP_SCAN: &[(&str, &str)] = &[
    ("", "events"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("", "endpoints"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "bindings"),
    ("", "componentstatuses"),
];

/// Whether discovery leaves `group`/`plural` out of its scan for kept
/// objects (such objects are only ever listed, never changed one by one).
pub fn is_scan_skipped(group: &str, plural: &str) -> bool {
    SKIP_SCAN.contains(&(group, plural))
}

/// Errors that make an inventory meaningless (so no plan can be made).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The API root could not be read.
    #[error("failed to discover the served APIs")]
    Api(#[from] ApiDiscoveryError),
    /// A list every plan depends on (namespaces, CRDs) failed.
    #[error("failed to list {resource}")]
    EssentialList {
        /// `plural.group`.
        resource: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

impl DiscoverError {
    /// Whether the API server refused the request (403): the credentials
    /// lack a read permission, which the message names.
    pub fn is_forbidden(&self) -> bool {
        let source = match self {
            DiscoverError::Api(ApiDiscoveryError::Root { source, .. }) => source,
            DiscoverError::EssentialList { source, .. } => source,
        };
        retry::status_code(source) == Some(403)
    }
}

/// Lists everything `profile` can match and returns it as an inventory for `cluster`.
pub async fn discover(
    client: &Client,
    profile: &Profile,
    cluster: &ClusterIdentity,
) -> Result<Inventory, DiscoverError> {
    discover_cached(client, profile, cluster, &mut CatalogCache::default()).await
}

/// [`discover`], reusing the API catalog's group-version documents `cache`
/// holds from an earlier discovery when no CRD or APIService changed since
/// (see [`api::CatalogCache`]), and leaving this one's in `cache`. The CRDs
/// and APIServices are listed before the catalog is read, so an unchanged
/// fingerprint means nothing changed from before the earlier catalog was
/// read until now.
pub async fn discover_cached(
    client: &Client,
    profile: &Profile,
    cluster: &ClusterIdentity,
    cache: &mut CatalogCache,
) -> Result<Inventory, DiscoverError> {
    let crds = essential(client, &types::crd()).await?;
    // A failed list is retried with the other cluster-wide lists (and
    // becomes an issue there); nothing is reused without it.
    let api_services = api::list_all(client, &types::api_service(), None, None)
        .await
        .ok()
        .map(without_field_sets);
    let fingerprint = api_services
        .as_deref()
        .map(|services| ApiFingerprint::of(&crds, services));
    let catalog = api::discover_api_cached(client, cache, fingerprint).await?;
    let listed = Listed {
        crds: Some(crds),
        api_services,
    };
    collect(client, profile, cluster, &catalog, listed).await
}

/// [`discover`] with an API catalog already read (verify and preflight reuse one).
pub async fn discover_with_catalog(
    client: &Client,
    profile: &Profile,
    cluster: &ClusterIdentity,
    catalog: &ApiCatalog,
) -> Result<Inventory, DiscoverError> {
    collect(client, profile, cluster, catalog, Listed::default()).await
}

/// Lists a discovery already made before reading the catalog.
#[derive(Default)]
struct Listed {
    crds: Option<Vec<DynamicObject>>,
    api_services: Option<Vec<DynamicObject>>,
}

async fn collect(
    client: &Client,
    profile: &Profile,
    cluster: &ClusterIdentity,
    catalog: &ApiCatalog,
    listed: Listed,
) -> Result<Inventory, DiscoverError> {
    let mut inventory = Inventory::empty(cluster.clone());
    inventory.resource_types = catalog
        .resources
        .iter()
        .map(|r| r.resource.clone())
        .collect();
    inventory.issues.extend(
        catalog
            .broken
            .iter()
            .map(|b| DiscoveryIssue::ApiGroupUnavailable {
                group_version: b.group_version.clone(),
                message: b.message.clone(),
            }),
    );

    // Essential lists: without them the plan would be wrong, not just incomplete.
    inventory.namespaces = essential(client, &types::namespace()).await?;
    let crds = match listed.crds {
        Some(crds) => crds,
        None => essential(client, &types::crd()).await?,
    };

    // Fixed cluster-wide lists, concurrently; a failure becomes an issue.
    let mut fixed = vec![
        types::validating_webhook(),
        types::mutating_webhook(),
        types::cluster_role(),
        types::cluster_role_binding(),
        types::role(),
        types::role_binding(),
        types::csr(),
    ];
    match listed.api_services {
        Some(services) => inventory.api_services = services,
        None => fixed.push(types::api_service()),
    }
    let listed: Vec<_> = futures::stream::iter(fixed)
        .map(|rt| async move {
            let result = api::list_all(client, &rt, None, None).await;
            (rt, result)
        })
        .buffered(LIST_CONCURRENCY)
        .collect()
        .await;
    for (rt, result) in listed {
        let objects = match result {
            Ok(objects) => without_field_sets(objects),
            Err(err) => {
                inventory.issues.push(list_failed(&rt, None, &err));
                continue;
            }
        };
        let slot = match rt.plural.as_str() {
            "validatingwebhookconfigurations" => &mut inventory.validating_webhooks,
            "mutatingwebhookconfigurations" => &mut inventory.mutating_webhooks,
            "apiservices" => &mut inventory.api_services,
            "clusterroles" => &mut inventory.cluster_roles,
            "clusterrolebindings" => &mut inventory.cluster_role_bindings,
            "roles" => &mut inventory.roles,
            "rolebindings" => &mut inventory.role_bindings,
            _ => &mut inventory.csrs,
        };
        *slot = objects;
    }

    // Which namespaces hold data (PersistentVolumeClaims), for data hazards and --keep-data.
    collect_volume_claims(client, &mut inventory).await;

    // CRDs the profile owns or shares, with all their instances.
    let matched: Vec<DynamicObject> = crds
        .into_iter()
        .filter(|crd| {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            let group = crd
                .data
                .pointer("/spec/group")
                .and_then(|g| g.as_str())
                .unwrap_or_default();
            profile.crd_role(name, group).is_some()
        })
        .collect();
    let platform_types: BTreeSet<(String, String)> = matched
        .iter()
        .filter_map(|crd| {
            let group = crd.data.pointer("/spec/group")?.as_str()?;
            let plural = crd.data.pointer("/spec/names/plural")?.as_str()?;
            Some((group.to_string(), plural.to_string()))
        })
        .collect();
    let crd_results: Vec<(CrdInventory, Option<DiscoveryIssue>)> = futures::stream::iter(matched)
        .map(|crd| collect_crd(client, catalog, crd))
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
    for (crd, issue) in crd_results {
        inventory.crds.push(crd);
        inventory.issues.extend(issue);
    }
    inventory.crds.sort_by(|a, b| a.name().cmp(b.name()));

    // Helm releases (after the CRDs: InstallPlans name extension releases).
    super::helm::collect(client, catalog, profile, &mut inventory).await;

    // Namespaces platform objects merely name (after the CRDs, which name
    // them): their whole content, so the planner can tell whether all of
    // it is the platform's. Only these few, one namespace at a time.
    for namespace in crate::plan::namespaces_needing_content(profile, &inventory) {
        let content = super::content::namespace_content(
            client,
            catalog,
            &namespace,
            crate::plan::CONTENT_SKIP,
        )
        .await;
        inventory.namespace_contents.push(content);
    }

    // Platform controllers, by exact name.
    for controller in &profile.controllers {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &controller.namespace);
        let what = format!(
            "get deployment {}/{}",
            controller.namespace, controller.name
        );
        match retry::with_retry(&RetryPolicy::standard(), &what, || {
            deployments.get_opt(&controller.name)
        })
        .await
        {
            Ok(Some(deployment)) => {
                if let Some(object) = to_dynamic(&deployment, &types::deployment()) {
                    inventory.controllers.push(object);
                }
            }
            Ok(None) => {}
            Err(err) => inventory.issues.push(list_failed(
                &types::deployment(),
                Some(&controller.namespace),
                &err,
            )),
        }
    }

    // Kept objects: every namespaced type, all namespaces, metadata only
    // (labels, annotations, finalizers and owner references are all that a
    // metadata strip reads), keeping those that carry platform metadata.
    // Cluster-scoped types the lists above do not cover are read too, for
    // their owner references only: a platform custom resource that something
    // depends on is deleted with Orphan propagation, the others need no
    // garbage-collector work.
    let listed_elsewhere = [
        types::namespace(),
        types::crd(),
        types::validating_webhook(),
        types::mutating_webhook(),
        types::api_service(),
        types::cluster_role(),
        types::cluster_role_binding(),
        types::csr(),
    ];
    let scan: Vec<ResourceType> = catalog
        .resources
        .iter()
        .filter(|r| {
            r.verbs.iter().any(|v| v == "list")
                && (!r.resource.namespaced || r.verbs.iter().any(|v| v == "patch"))
        })
        .filter(|r| !SKIP_SCAN.contains(&(r.resource.group.as_str(), r.resource.plural.as_str())))
        .filter(|r| {
            !platform_types.contains(&(r.resource.group.clone(), r.resource.plural.clone()))
        })
        .filter(|r| {
            !listed_elsewhere
                .iter()
                .any(|t| t.group == r.resource.group && t.plural == r.resource.plural)
        })
        .map(|r| r.resource.clone())
        .collect();
    // Filtered page by page: a large cluster's user ConfigMaps and Secrets
    // (tens of thousands) are read, never held; only the few objects kept
    // here outlive their page.
    let scanned: Vec<_> = futures::stream::iter(scan)
        .map(|rt| async move {
            let keep = |o: &DynamicObject| {
                if rt.namespaced {
                    profile.carries_platform_metadata(&o.metadata)
                        || profile.may_be_executor_leftover(&rt.group, &rt.kind, &o.metadata)
                } else {
                    profile.has_platform_owner(&o.metadata)
                }
            };
            let result = list_metadata_keeping(client, &rt, None, keep).await;
            (rt, result)
        })
        .buffered(LIST_CONCURRENCY)
        .collect()
        .await;
    for (rt, result) in scanned {
        match result {
            Ok(objects) if objects.is_empty() => {}
            Ok(objects) if rt.namespaced => inventory.kept_objects.push(ObservedList {
                resource: rt,
                objects,
            }),
            Ok(objects) => inventory.owned_cluster_objects.push(ObservedList {
                resource: rt,
                objects,
            }),
            Err(err) => inventory.issues.push(list_failed(&rt, None, &err)),
        }
    }

    tracing::info!(
        namespaces = inventory.namespaces.len(),
        crds = inventory.crds.len(),
        instances = inventory
            .crds
            .iter()
            .map(|c| c.instances.len())
            .sum::<usize>(),
        kept_object_types = inventory.kept_objects.len(),
        volume_claims = inventory.volume_claims.len(),
        issues = inventory.issues.len(),
        "discovery finished"
    );
    Ok(inventory)
}

/// Lists every PersistentVolumeClaim, metadata only (names and namespaces are
/// all the planner reads). A failure is an issue, not an error: the planner
/// then treats every namespace as possibly holding data.
async fn collect_volume_claims(client: &Client, inventory: &mut Inventory) {
    let rt = types::persistent_volume_claim();
    match list_metadata_all(client, &rt).await {
        Ok(claims) => inventory.volume_claims = claims,
        Err(err) => inventory.issues.push(list_failed(&rt, None, &err)),
    }
}

async fn essential(
    client: &Client,
    rt: &ResourceType,
) -> Result<Vec<DynamicObject>, DiscoverError> {
    api::list_all(client, rt, None, None)
        .await
        .map(without_field_sets)
        .map_err(|source| DiscoverError::EssentialList {
            resource: rt.qualified_plural(),
            source,
        })
}

/// Lists a CRD's instances at the best version: the storage version when it is
/// served (no conversion needed for most objects, so a dead conversion webhook
/// hurts least), else the discovery-preferred version, else any served one.
pub(super) async fn collect_crd(
    client: &Client,
    catalog: &ApiCatalog,
    crd: DynamicObject,
) -> (CrdInventory, Option<DiscoveryIssue>) {
    let resource = instance_type(catalog, &crd);
    let mut entry = CrdInventory {
        crd,
        resource: resource.clone(),
        instances: Vec::new(),
        instances_listed: false,
    };
    let Some(rt) = resource else {
        let issue = DiscoveryIssue::ListFailed {
            resource: entry.name().to_string(),
            namespace: None,
            message: "no served version: instances cannot be listed".into(),
        };
        return (entry, Some(issue));
    };
    match api::list_all(client, &rt, None, None).await {
        Ok(instances) => {
            entry.instances = without_field_sets(instances);
            entry.instances_listed = true;
            (entry, None)
        }
        // The CRD is not (or no longer) established: nothing can exist.
        Err(err) if retry::is_not_found(&err) => {
            entry.instances_listed = true;
            (entry, None)
        }
        Err(err) => {
            let issue = list_failed(&rt, None, &err);
            (entry, Some(issue))
        }
    }
}

/// The type to list a CRD's instances with, from the CRD's own spec.
pub fn instance_type(catalog: &ApiCatalog, crd: &DynamicObject) -> Option<ResourceType> {
    let spec = crd.data.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let plural = spec.pointer("/names/plural")?.as_str()?.to_string();
    let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
    let namespaced = spec.get("scope").and_then(|s| s.as_str()) == Some("Namespaced");
    let versions = spec.get("versions")?.as_array()?;
    let served = |v: &&serde_json::Value| v.get("served").and_then(|s| s.as_bool()) == Some(true);
    let storage = versions
        .iter()
        .filter(served)
        .find(|v| v.get("storage").and_then(|s| s.as_bool()) == Some(true));
    let preferred = catalog
        .find(&group, &plural)
        .map(|r| r.resource.version.clone());
    let version = storage
        .and_then(|v| v.get("name")?.as_str().map(str::to_string))
        .or(preferred)
        .or_else(|| {
            versions
                .iter()
                .find(served)?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })?;
    Some(ResourceType {
        group,
        version,
        kind,
        plural,
        namespaced,
    })
}

/// Metadata-only paged list across all namespaces, as dynamic objects with empty data.
async fn list_metadata_all(
    client: &Client,
    rt: &ResourceType,
) -> Result<Vec<DynamicObject>, kube::Error> {
    list_metadata(client, rt, None).await
}

/// Metadata-only paged list (in one namespace, or all), as dynamic objects
/// with empty data.
pub(super) async fn list_metadata(
    client: &Client,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    list_metadata_keeping(client, rt, namespace, |_| true).await
}

/// [`list_metadata`] keeping only the objects `keep` accepts, decided page
/// by page (memory: what is kept, plus one page).
async fn list_metadata_keeping(
    client: &Client,
    rt: &ResourceType,
    namespace: Option<&str>,
    keep: impl Fn(&DynamicObject) -> bool,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let api = api::dynamic_api(client, rt, namespace);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(api::PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let what = match namespace {
            Some(ns) => format!("list metadata {rt} in {ns}"),
            None => format!("list metadata {rt}"),
        };
        let page = retry::with_retry(&RetryPolicy::standard(), &what, || {
            api.list_metadata(&params)
        })
        .await?;
        out.extend(
            page.items
                .into_iter()
                .map(|p| DynamicObject {
                    types: Some(TypeMeta {
                        api_version: rt.api_version(),
                        kind: rt.kind.clone(),
                    }),
                    metadata: p.metadata,
                    data: serde_json::Value::Object(Default::default()),
                })
                .filter(&keep)
                .map(without_field_set),
        );
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// [`without_field_set`] for each object.
pub(super) fn without_field_sets(mut objects: Vec<DynamicObject>) -> Vec<DynamicObject> {
    for object in &mut objects {
        drop_field_set(object);
    }
    objects
}

/// The object without the field sets of its `managedFields` (`fieldsV1`):
/// who wrote it stays (manager, operation, time, subresource: verify names a
/// platform controller that still writes by them), what each writer owns
/// goes. The field sets mirror every field of the object, so they are often
/// the larger part of a custom resource held in the inventory (at 50,000
/// objects, tens of MiB); no decision reads them, and restore puts no
/// `managedFields` back (the server writes its own).
pub(super) fn without_field_set(mut object: DynamicObject) -> DynamicObject {
    drop_field_set(&mut object);
    object
}

fn drop_field_set(object: &mut DynamicObject) {
    for entry in object.metadata.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
}

fn list_failed(rt: &ResourceType, namespace: Option<&str>, err: &kube::Error) -> DiscoveryIssue {
    DiscoveryIssue::ListFailed {
        resource: rt.qualified_plural(),
        namespace: namespace.map(str::to_string),
        message: api::error_message(err),
    }
}

/// Converts a typed object to a dynamic one of type `rt`.
pub(crate) fn to_dynamic<K: serde::Serialize>(
    object: &K,
    rt: &ResourceType,
) -> Option<DynamicObject> {
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), rt.api_version().into());
        map.insert("kind".into(), rt.kind.clone().into());
    }
    serde_json::from_value(value).ok()
}
