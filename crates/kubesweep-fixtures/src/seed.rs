//! Writes a plan to a real cluster: CRDs first (waiting until Established), then objects in waves
//! ordered by their namespace and owners with a bounded number of requests in flight, then the
//! deletions that leave objects Terminating, then webhooks and APIServices, then a wait until the
//! controllers that write to seeded objects have settled, so that snapshots taken afterwards are
//! stable.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::footprint::{Footprint, ObjectKey, Role};
use crate::plan::{FOREIGN_MANAGER, Plan, SeedItem, Stage};
use crate::scale::Scale;
use crate::{kubesphere_member, kubesphere_v3, kubesphere_v4};

/// The platform footprint to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// KubeSphere 4.1 after `helm uninstall ks-core`.
    #[default]
    KubesphereV4,
    /// KubeSphere 3.4 (ks-installer) leftovers; a fixed footprint, whatever the scale.
    KubesphereV3,
    /// A KubeSphere 4.1 member cluster: ks-core installed as the agent, an extension's
    /// `<ext>-agent` release, synced workspaces and IAM copies (see [`crate::kubesphere_member`]).
    KubesphereMember,
}

impl Profile {
    /// Name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Profile::KubesphereV4 => kubesphere_v4::PROFILE,
            Profile::KubesphereV3 => kubesphere_v3::PROFILE,
            Profile::KubesphereMember => kubesphere_member::PROFILE,
        }
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kubesphere-v4" | "kubesphere" => Ok(Profile::KubesphereV4),
            "kubesphere-v3" => Ok(Profile::KubesphereV3),
            "kubesphere-member" => Ok(Profile::KubesphereMember),
            other => Err(Error::InvalidOption(format!(
                "unknown profile {other:?} (known: kubesphere-v4, kubesphere-v3, kubesphere-member)"
            ))),
        }
    }
}

/// What to seed and how.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The footprint.
    pub profile: Profile,
    /// Its size.
    pub scale: Scale,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Upper bound for each wait (CRDs Established, Deployments settled).
    pub wait_timeout: Duration,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            profile: Profile::KubesphereV4,
            scale: Scale::SMALL,
            concurrency: 64,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

/// The result of a seed.
#[derive(Debug, Clone)]
pub struct SeededFootprint {
    /// What was seeded.
    pub footprint: Footprint,
    /// Write requests made (applies, patches, deletes).
    pub requests: usize,
    /// Wall time of the whole seed.
    pub elapsed: Duration,
    /// Wall time per step, in order.
    pub steps: Vec<(String, Duration)>,
}

/// The footprint a seed with these options creates, without touching a cluster.
pub fn footprint(opts: &SeedOptions) -> Footprint {
    build_plan(opts).footprint(opts.profile.name(), opts.scale)
}

pub(crate) fn build_plan(opts: &SeedOptions) -> Plan {
    match opts.profile {
        Profile::KubesphereV4 => kubesphere_v4::plan(opts.scale),
        Profile::KubesphereV3 => kubesphere_v3::plan(),
        Profile::KubesphereMember => kubesphere_member::plan(opts.scale),
    }
}

/// Seeds the footprint. Idempotent: seeding again re-applies every object (server-side apply),
/// re-deletes the Terminating ones and leaves the cluster in the same state.
pub async fn seed(client: &Client, opts: &SeedOptions) -> Result<SeededFootprint> {
    seed_plan(client, build_plan(opts), opts.profile.name(), opts).await
}

/// Seeds any plan the way [`seed`] does; `name` names its footprint.
pub(crate) async fn seed_plan(
    client: &Client,
    plan: Plan,
    name: &str,
    opts: &SeedOptions,
) -> Result<SeededFootprint> {
    let start = Instant::now();
    let mut steps = Vec::new();
    let seeder = Seeder {
        client: client.clone(),
        uids: Mutex::new(HashMap::new()),
        requests: Default::default(),
        concurrency: opts.concurrency.max(1),
    };

    let mut step = |name: &str, t: &mut Instant| {
        steps.push((name.to_string(), t.elapsed()));
        *t = Instant::now();
    };
    let mut t = Instant::now();

    // A second seed must get past the Fail webhooks of the first: they call a Service that does not
    // exist and would reject every write to installplans, jsbundles, applicationreleases...
    let last: Vec<&SeedItem> = plan
        .items
        .iter()
        .filter(|i| i.stage == Stage::Last)
        .collect();
    let blocking = last.iter().copied().filter(|i| {
        i.object.role == Role::Platform && i.object.key.kind.ends_with("WebhookConfiguration")
    });
    seeder.run(blocking, |i| seeder.delete(i, true)).await?;
    step("remove the platform webhooks of an earlier seed", &mut t);

    // Over a footprint a cleanup left half-deleted (Terminating CRDs refuse new instances,
    // Terminating namespaces new content), finish the removal first: the fixtures own these
    // objects on a test cluster.
    if half_deleted(client, &plan).await? {
        let footprint = plan.footprint(name, opts.scale);
        crate::teardown::teardown(client, &footprint, opts).await?;
    }
    step(
        "finish the removal of a half-deleted earlier footprint",
        &mut t,
    );

    seeder
        .apply_all(plan.items.iter().filter(|i| i.stage == Stage::First))
        .await?;
    let crds: Vec<&SeedItem> = plan
        .items
        .iter()
        .filter(|i| i.stage == Stage::Crds)
        .collect();
    seeder.apply_all(crds.iter().copied()).await?;
    step("apply CRDs", &mut t);
    let names: Vec<String> = crds.iter().map(|i| i.object.key.name.clone()).collect();
    wait_established(client, &names, opts.wait_timeout).await?;
    step("wait for CRDs Established", &mut t);

    seeder
        .run(
            plan.items.iter().filter(|i| i.stage == Stage::SystemPatch),
            |i| seeder.patch_system_namespace(i),
        )
        .await?;
    step("patch system namespaces", &mut t);

    let objects: Vec<&SeedItem> = plan
        .items
        .iter()
        .filter(|i| i.stage == Stage::Objects)
        .collect();
    for wave in waves(&objects) {
        seeder.apply_all(wave.into_iter()).await?;
    }
    step("apply objects", &mut t);

    seeder
        .run(plan.items.iter().filter(|i| i.object.terminating), |i| {
            seeder.delete(i, false)
        })
        .await?;
    step("delete the objects left Terminating", &mut t);

    seeder.apply_all(last.iter().copied()).await?;
    step("apply webhooks and APIServices", &mut t);

    let deployments: Vec<&ObjectKey> = plan
        .items
        .iter()
        .filter(|i| i.object.key.kind == "Deployment")
        .map(|i| &i.object.key)
        .collect();
    wait_deployments_settled(client, &deployments, opts.wait_timeout).await?;
    step("wait for Deployments to settle", &mut t);

    let requests = *seeder.requests.lock().unwrap_or_else(|p| p.into_inner());
    Ok(SeededFootprint {
        footprint: plan.footprint(name, opts.scale),
        requests,
        elapsed: start.elapsed(),
        steps,
    })
}

/// Groups objects so that each one comes after its namespace and its owners.
fn waves<'a>(items: &[&'a SeedItem]) -> Vec<Vec<&'a SeedItem>> {
    let mut level: HashMap<&ObjectKey, usize> = HashMap::new();
    let mut namespaces: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<&SeedItem>> = Vec::new();
    for item in items {
        let key = &item.object.key;
        let ns_dep = key
            .namespace
            .as_deref()
            .and_then(|ns| namespaces.get(ns))
            .map(|l| l + 1);
        let owner_dep = item
            .owners
            .iter()
            .filter_map(|o| level.get(&o.key).map(|l| l + 1))
            .max();
        let l = ns_dep.into_iter().chain(owner_dep).max().unwrap_or(0);
        level.insert(key, l);
        if key.kind == "Namespace" && key.api_version == "v1" {
            namespaces.insert(&key.name, l);
        }
        if out.len() <= l {
            out.resize_with(l + 1, Vec::new);
        }
        out[l].push(item);
    }
    out
}

struct Seeder {
    client: Client,
    /// UIDs of applied objects by (group, kind, namespace, name): owner references may name an
    /// older version of the owner's group than the one it was written with.
    uids: Mutex<HashMap<UidKey, String>>,
    requests: Mutex<usize>,
    concurrency: usize,
}

/// (group, kind, namespace, name).
type UidKey = (String, String, Option<String>, String);

fn uid_key(key: &ObjectKey) -> UidKey {
    (
        key.group().to_string(),
        key.kind.clone(),
        key.namespace.clone(),
        key.name.clone(),
    )
}

fn api(client: &Client, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Whether a failed call is worth repeating: throttling, server hiccups, conflicts, and the
/// moments after a CRD is Established when its REST endpoint is not served yet.
fn transient(e: &kube::Error) -> bool {
    match e {
        // 409 AlreadyExists is an answer, not a hiccup; 409 Conflict is a lost race worth retrying.
        kube::Error::Api(s) if s.code == 409 => s.reason != "AlreadyExists",
        kube::Error::Api(s) => matches!(s.code, 404 | 429 | 500 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

async fn retry<T, F, Fut>(f: F) -> std::result::Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    retry_if(transient, f).await
}

/// Calls `f` until it succeeds, fails with an error `worth_retrying` rejects, or eight attempts.
pub(crate) async fn retry_if<T, F, Fut>(
    worth_retrying: fn(&kube::Error) -> bool,
    mut f: F,
) -> std::result::Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..7 {
        match f().await {
            Err(e) if worth_retrying(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    f().await
}

impl Seeder {
    async fn run<'a, I, F, Fut>(&self, items: I, f: F) -> Result<()>
    where
        I: Iterator<Item = &'a SeedItem>,
        F: Fn(&'a SeedItem) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        stream::iter(items.map(f))
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn apply_all<'a>(&self, items: impl Iterator<Item = &'a SeedItem>) -> Result<()> {
        self.run(items, |i| self.apply(i)).await
    }

    fn count(&self) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    async fn apply(&self, item: &SeedItem) -> Result<()> {
        let key = &item.object.key;
        let mut manifest = item.manifest.clone();
        if !item.owners.is_empty() {
            let uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
            let refs: Vec<Value> = item
                .owners
                .iter()
                .map(|o| {
                    let uid = uids.get(&uid_key(&o.key)).cloned().unwrap_or_default();
                    json!({"apiVersion": o.api_version, "kind": o.key.kind, "name": o.key.name, "uid": uid,
                           "controller": o.controller, "blockOwnerDeletion": o.block_owner_deletion})
                })
                .collect();
            manifest["metadata"]["ownerReferences"] = Value::Array(refs);
        }
        let api = api(&self.client, &item.resource(), key.namespace.as_deref());
        let err = |action, source| Error::Api {
            action,
            object: key.to_string(),
            source,
        };
        // Server-side apply, always: a create would be cheaper on a fresh cluster (about 15% at
        // 10,000 objects), but a later reseed's apply would then rewrite every object's
        // managedFields, and a reseed must leave objects untouched to keep snapshots comparable.
        let params = PatchParams::apply(item.manager).force();
        let patch = Patch::Apply(&manifest);
        self.count();
        let obj = match retry(|| api.patch(&key.name, &params, &patch)).await {
            Ok(obj) => obj,
            // A Terminating object whose finalizers a cleanup already removed (or is removing):
            // it cannot take them back, so wait until it is gone and create it anew.
            Err(kube::Error::Api(s))
                if s.code == 422 && s.message.contains("no new finalizers") =>
            {
                self.wait_gone(&api, key).await?;
                self.count();
                retry(|| api.patch(&key.name, &params, &patch))
                    .await
                    .map_err(|e| err("apply", e))?
            }
            Err(e) => return Err(err("apply", e)),
        };
        if let Some(uid) = obj.uid() {
            self.uids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(uid_key(key), uid);
        }
        Ok(())
    }

    async fn wait_gone(&self, api: &Api<DynamicObject>, key: &ObjectKey) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match api.get_opt(&key.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Some(_)) => {
                    return Err(Error::NotSettled {
                        what: format!("deletion of {key}"),
                        seconds: 60,
                    });
                }
                Err(source) => {
                    return Err(Error::Api {
                        action: "get",
                        object: key.to_string(),
                        source,
                    });
                }
            }
        }
    }

    async fn delete(&self, item: &SeedItem, missing_ok: bool) -> Result<()> {
        let key = &item.object.key;
        let api = api(&self.client, &item.resource(), key.namespace.as_deref());
        self.count();
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 && missing_ok => Ok(()),
            Err(source) => Err(Error::Api {
                action: "delete",
                object: key.to_string(),
                source,
            }),
        }
    }

    /// Adds keys to a namespace that exists before the seed: labels and annotations by JSON merge
    /// patch (which only adds map keys), finalizers as the union with those present, guarded by the
    /// resourceVersion so a concurrent writer is never overwritten.
    async fn patch_system_namespace(&self, item: &SeedItem) -> Result<()> {
        let key = &item.object.key;
        let api = api(&self.client, &item.resource(), None);
        let patches = [
            (item.manager, &item.manifest),
            (
                FOREIGN_MANAGER,
                item.foreign_patch.as_ref().unwrap_or(&Value::Null),
            ),
        ];
        for (manager, patch) in patches {
            if patch.is_null() {
                continue;
            }
            let result = retry(|| async {
                let current = api.get(&key.name).await?;
                let mut finalizers = current.finalizers().to_vec();
                for f in patch["metadata"]["finalizers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !finalizers.iter().any(|x| x == f) {
                        finalizers.push(f.to_string());
                    }
                }
                let body = json!({"metadata": {
                    "resourceVersion": current.resource_version(),
                    "labels": patch["metadata"]["labels"],
                    "annotations": patch["metadata"]["annotations"],
                    "finalizers": finalizers,
                }});
                self.count();
                api.patch(
                    &key.name,
                    &PatchParams {
                        field_manager: Some(manager.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(&body),
                )
                .await
            })
            .await;
            result.map_err(|source| Error::Api {
                action: "patch",
                object: key.to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Whether any of the plan's CRDs or namespaces is Terminating.
async fn half_deleted(client: &Client, plan: &Plan) -> Result<bool> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let list_err = |what: &str, source| Error::Api {
        action: "list",
        object: what.to_string(),
        source,
    };
    let crd_list = crds
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("CustomResourceDefinitions", e))?;
    let ns_list = namespaces
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("Namespaces", e))?;
    let terminating: std::collections::HashSet<String> = crd_list
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_some())
        .map(|c| c.name_any())
        .chain(
            ns_list
                .items
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_some())
                .map(|n| n.name_any()),
        )
        .collect();
    Ok(plan.items.iter().any(|i| {
        matches!(
            i.object.key.kind.as_str(),
            "CustomResourceDefinition" | "Namespace"
        ) && terminating.contains(&i.object.key.name)
    }))
}

async fn wait_established(client: &Client, names: &[String], timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::Api {
                action: "list",
                object: "CustomResourceDefinitions".into(),
                source,
            })?;
        let established = |name: &str| {
            list.items
                .iter()
                .find(|c| c.name_any() == name)
                .and_then(|c| {
                    let conditions = c.status.as_ref()?.conditions.as_ref()?;
                    Some(
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True"),
                    )
                })
                == Some(true)
        };
        let pending: Vec<&String> = names.iter().filter(|n| !established(n)).collect();
        let Some(first) = pending.first() else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(Error::NotEstablished {
                name: first.to_string(),
                seconds: timeout.as_secs(),
                reason: format!("{} CRDs pending", pending.len()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the deployment controller has finished with every seeded Deployment: it writes
/// their status twice (observed generation, then the `NewReplicaSetAvailable` progress), and a
/// snapshot taken before that would differ from one taken after without anyone touching them.
async fn wait_deployments_settled(
    client: &Client,
    keys: &[&ObjectKey],
    timeout: Duration,
) -> Result<()> {
    let ar = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let deadline = Instant::now() + timeout;
    loop {
        let mut settled = std::collections::HashSet::new();
        let mut params = ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await.map_err(|source| Error::Api {
                action: "list",
                object: "Deployments".into(),
                source,
            })?;
            for d in &page.items {
                if deployment_settled(d) {
                    settled.insert((d.namespace().unwrap_or_default(), d.name_any()));
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => params = params.continue_token(&c),
                None => break,
            }
        }
        let pending = keys
            .iter()
            .filter(|k| {
                !settled.contains(&(k.namespace.clone().unwrap_or_default(), k.name.clone()))
            })
            .count();
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotSettled {
                what: format!("{pending} Deployments"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn deployment_settled(d: &DynamicObject) -> bool {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = &d.data["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let progressed = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable");
    observed >= generation && progressed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_put_namespaces_and_owners_first() {
        let plan = kubesphere_v4::plan(Scale::SMALL);
        let objects: Vec<&SeedItem> = plan
            .items
            .iter()
            .filter(|i| i.stage == Stage::Objects)
            .collect();
        let waves = waves(&objects);
        let wave_of = |key: &ObjectKey| {
            waves
                .iter()
                .position(|w| w.iter().any(|i| &i.object.key == key))
        };
        for item in &objects {
            let w = wave_of(&item.object.key);
            for o in &item.owners {
                assert!(
                    wave_of(&o.key) < w,
                    "{} before its owner {}",
                    item.object.key,
                    o.key
                );
            }
            if let Some(ns) = &item.object.key.namespace {
                let ns_item = objects
                    .iter()
                    .find(|i| i.object.key.kind == "Namespace" && &i.object.key.name == ns);
                if let Some(ns_item) = ns_item {
                    assert!(
                        wave_of(&ns_item.object.key) < w,
                        "{} before its namespace",
                        item.object.key
                    );
                }
            }
        }
        assert!(waves.len() >= 3);
    }

    #[test]
    fn profile_parses() {
        assert_eq!(
            "kubesphere-v4".parse::<Profile>().expect("profile"),
            Profile::KubesphereV4
        );
        assert_eq!(
            "kubesphere-v3".parse::<Profile>().expect("profile"),
            Profile::KubesphereV3
        );
        assert_eq!(Profile::KubesphereV3.name(), "kubesphere-v3");
        assert!("rancher".parse::<Profile>().is_err());
    }
}
