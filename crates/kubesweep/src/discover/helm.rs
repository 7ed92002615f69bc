//! Helm release discovery: lists the release records (Secrets and ConfigMaps
//! labelled `owner=helm`) in all namespaces, decodes them, keeps for each
//! release the revision `helm uninstall` would act on, and, for the releases
//! the profile selects, reads every object of the manifest and every CRD of
//! the chart's `crds/` as it lives in the cluster. A manifest has no UIDs:
//! reading the live objects is what binds the plan's actions to them.
//! The CRDs such a release brings outside the profile's groups (Gateway API,
//! cert-manager...) have every instance listed too, into `inventory.crds`:
//! whether another program uses them decides whether they may ever go.

use futures::StreamExt;
use kube::Client;
use kube::api::DynamicObject;

use super::api::{self, ApiCatalog};
use crate::helm::{self, LiveObject, ObservedRelease, StorageDriver};
use crate::inventory::{DiscoveryIssue, Inventory, types};
use crate::profile::Profile;
use crate::resource::ResourceType;
use crate::retry::{self, RetryPolicy};

/// How many live objects are read at the same time.
const GET_CONCURRENCY: usize = 8;

/// Label selector of every Helm 3 record.
const RECORD_SELECTOR: &str = "owner=helm";

fn secret_type() -> ResourceType {
    ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: "Secret".into(),
        plural: "secrets".into(),
        namespaced: true,
    }
}

fn config_map_type() -> ResourceType {
    ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
        namespaced: true,
    }
}

/// Fills `inventory.helm`; needs `inventory.crds` (InstallPlans name releases).
pub(crate) async fn collect(
    client: &Client,
    catalog: &ApiCatalog,
    profile: &Profile,
    inventory: &mut Inventory,
) {
    let mut records: Vec<(StorageDriver, DynamicObject)> = Vec::new();
    for (driver, rt) in [
        (StorageDriver::Secret, secret_type()),
        (StorageDriver::ConfigMap, config_map_type()),
    ] {
        match api::list_all(client, &rt, None, Some(RECORD_SELECTOR)).await {
            Ok(objects) => records.extend(objects.into_iter().map(|o| (driver, o))),
            Err(err) => inventory.issues.push(DiscoveryIssue::ListFailed {
                resource: rt.qualified_plural(),
                namespace: None,
                message: format!("helm release records: {}", api::error_message(&err)),
            }),
        }
    }
    inventory.helm = helm::summarise(records);
    let selection = helm::select_releases(profile, inventory);
    let mut releases = std::mem::take(&mut inventory.helm.releases);
    for release in &mut releases {
        let key = helm::ReleaseKey {
            namespace: release.namespace.clone(),
            name: release.name.clone(),
        };
        if selection.selected.contains_key(&key) {
            read_live(client, catalog, release, &mut inventory.issues).await;
        }
    }
    inventory.helm.releases = releases;
    list_release_crd_instances(client, catalog, profile, inventory).await;
}

/// Lists the instances of every CRD a selected release brought that the
/// profile does not match (those it matches are listed already).
async fn list_release_crd_instances(
    client: &Client,
    catalog: &ApiCatalog,
    profile: &Profile,
    inventory: &mut Inventory,
) {
    let mut wanted: Vec<DynamicObject> = Vec::new();
    for live in inventory.helm.releases.iter().flat_map(|r| &r.live) {
        let crd = &live.object;
        let is_crd = live.resource.group == "apiextensions.k8s.io"
            && live.resource.kind == "CustomResourceDefinition";
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        let group = crd
            .data
            .pointer("/spec/group")
            .and_then(|g| g.as_str())
            .unwrap_or_default();
        let known = inventory.crds.iter().any(|c| c.name() == name)
            || wanted
                .iter()
                .any(|w| w.metadata.name.as_deref() == Some(name));
        if is_crd && !known && profile.crd_role(name, group).is_none() {
            wanted.push(crd.clone());
        }
    }
    let listed: Vec<_> = futures::stream::iter(wanted)
        .map(|crd| super::collect::collect_crd(client, catalog, crd))
        .buffer_unordered(GET_CONCURRENCY)
        .collect()
        .await;
    for (crd, issue) in listed {
        inventory.crds.push(crd);
        inventory.issues.extend(issue);
    }
    inventory.crds.sort_by(|a, b| a.name().cmp(b.name()));
}

/// Reads the live objects of a selected release.
async fn read_live(
    client: &Client,
    catalog: &ApiCatalog,
    release: &mut ObservedRelease,
    issues: &mut Vec<DiscoveryIssue>,
) {
    let mut wanted: Vec<(ResourceType, Option<String>, String, bool)> = Vec::new();
    for object in &release.objects {
        match catalog.find_kind(object.group(), &object.kind) {
            Some(served) => {
                let rt = served.resource.clone();
                let namespace = rt.namespaced.then(|| {
                    object
                        .namespace
                        .clone()
                        .unwrap_or_else(|| release.namespace.clone())
                });
                wanted.push((rt, namespace, object.name.clone(), false));
            }
            None => release.unserved.push(object.clone()),
        }
    }
    for crd in &release.chart_crds {
        wanted.push((types::crd(), None, crd.name.clone(), true));
    }
    let read: Vec<_> = futures::stream::iter(wanted)
        .map(|(rt, namespace, name, chart_crd)| async move {
            let api = api::dynamic_api(client, &rt, namespace.as_deref());
            let what = format!("get {rt} {name}");
            let result =
                retry::with_retry(&RetryPolicy::standard(), &what, || api.get_opt(&name)).await;
            (rt, namespace, chart_crd, result)
        })
        .buffered(GET_CONCURRENCY)
        .collect()
        .await;
    for (rt, namespace, chart_crd, result) in read {
        match result {
            Ok(Some(object)) => release.live.push(LiveObject {
                resource: rt,
                object,
                chart_crd,
            }),
            // Already gone: nothing to delete.
            Ok(None) => {}
            Err(err) if retry::is_not_found(&err) => {}
            Err(err) => issues.push(DiscoveryIssue::ListFailed {
                resource: rt.qualified_plural(),
                namespace,
                message: format!(
                    "object of helm release {}/{}: {}",
                    release.namespace,
                    release.name,
                    api::error_message(&err)
                ),
            }),
        }
    }
}
