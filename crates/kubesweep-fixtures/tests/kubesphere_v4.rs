//! The kubesphere-v4 footprint on the real control plane: seeding creates every piece the fact
//! sheet describes, with the finalizers, Terminating states, webhooks and namespace keys a cleanup
//! has to deal with; seeding is idempotent; snapshots are stable; teardown restores the cluster.
//!
//! Every test takes the cluster lock: the footprint uses fixed cluster-wide names. Each test tears
//! the footprint down at its end, because its aggregated APIService (unavailable by design) stops
//! the namespace controller for the whole cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client, teardown_on_panic};
use kubesweep_fixtures::helm::Release;
use kubesweep_fixtures::kubesphere_v4::{
    EXTENSION, EXTENSION_APISERVICE, EXTENSION_NAMESPACE, SYSTEM_NAMESPACES, kubesphere_webhooks,
};
use kubesweep_fixtures::{
    Footprint, Role, SeedOptions, SeededObject, seed, snapshot, summary, teardown,
};

async fn get(client: &Client, o: &SeededObject) -> DynamicObject {
    let ar = o.api_resource();
    let api: Api<DynamicObject> = match &o.key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.get(&o.key.name)
        .await
        .unwrap_or_else(|e| panic!("get {}: {e}", o.key))
}

fn find<'a>(f: &'a Footprint, kind: &str, ns: Option<&str>, name: &str) -> &'a SeededObject {
    f.find(kind, ns, name)
        .unwrap_or_else(|| panic!("{kind} {ns:?}/{name} in the footprint"))
}

#[tokio::test]
async fn seeded_footprint_is_in_the_cluster() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let opts = SeedOptions::default();
    let seeded = seed(&client, &opts).await.expect("seed");
    let _teardown = teardown_on_panic(&seeded.footprint, &opts);
    let f = &seeded.footprint;
    eprintln!(
        "seeded {} objects in {:.2?}: {:?}",
        f.objects.len(),
        seeded.elapsed,
        seeded.steps
    );

    // 39 KubeSphere CRDs (35 cluster-scoped), all Established, and the foreign ones.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert_eq!(f.platform_crds().len(), 39);
    let mut cluster_scoped = 0;
    for name in f.platform_crds().into_iter().chain(f.foreign_crds()) {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name}: {e}"));
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "CRD {name} Established");
        if crd.spec.scope == "Cluster" && f.platform_crds().contains(&name) {
            cluster_scoped += 1;
        }
    }
    assert_eq!(cluster_scoped, 35);

    // Every object carries the finalizers the seed gave it; the Terminating ones are being deleted.
    for o in f.objects.iter().filter(|o| o.role != Role::SystemNamespace) {
        let obj = get(&client, o).await;
        for fin in &o.finalizers {
            assert!(
                obj.finalizers().contains(fin),
                "{} lacks finalizer {fin}",
                o.key
            );
        }
        assert_eq!(
            obj.metadata.deletion_timestamp.is_some(),
            o.terminating,
            "{} Terminating",
            o.key
        );
    }
    assert!(find(f, "User", None, "admin").terminating);
    assert!(find(f, "WorkspaceTemplate", None, "system-workspace").terminating);
    assert!(find(f, "Repository", None, "extensions-museum").terminating);

    // The 3.x owner reference of a project namespace names the real Workspace UID.
    let ws = get(&client, find(f, "Workspace", None, "demo-workspace")).await;
    let project = get(
        &client,
        find(f, "Namespace", None, "demo-workspace-project-1"),
    )
    .await;
    let owner = project
        .owner_references()
        .first()
        .cloned()
        .expect("project owner reference");
    assert_eq!(owner.api_version, "tenant.kubesphere.io/v1alpha1");
    assert_eq!(owner.kind, "Workspace");
    assert_eq!(Some(owner.uid), ws.metadata.uid);
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let role = get(
        &client,
        find(
            f,
            "ClusterRole",
            None,
            "kubesphere:iam:custom-cluster-viewer",
        ),
    )
    .await;
    assert_eq!(
        role.labels()
            .get("iam.kubesphere.io/clusterrole-ref")
            .map(String::as_str),
        Some("custom-cluster-viewer")
    );
    assert!(
        role.owner_references().iter().all(|r| !r.uid.is_empty()),
        "owner UIDs resolved"
    );

    // Webhooks: names and failure policies of the fact sheet, all calling the deleted Service.
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for (is_validating, name, fail) in kubesphere_webhooks() {
        let expected = if fail { "Fail" } else { "Ignore" };
        let (policy, service) = if is_validating {
            let w = validating.get(name).await.expect("validating webhook");
            let h = w.webhooks.unwrap_or_default().remove(0);
            (h.failure_policy, h.client_config.service)
        } else {
            let w = mutating.get(name).await.expect("mutating webhook");
            let h = w.webhooks.unwrap_or_default().remove(0);
            (h.failure_policy, h.client_config.service)
        };
        assert_eq!(policy.as_deref(), Some(expected), "{name}");
        let service = service.expect("service reference");
        assert_eq!(
            (
                service.namespace.as_str(),
                service.name.as_str(),
                service.port
            ),
            ("kubesphere-system", "ks-controller-manager", Some(443))
        );
    }

    // The system namespaces carry KubeSphere's keys and the other vendor's side by side.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in SYSTEM_NAMESPACES {
        let ns = namespaces.get(name).await.expect("system namespace");
        let labels = ns.labels();
        assert_eq!(
            labels.get("kubesphere.io/workspace").map(String::as_str),
            Some("system-workspace"),
            "{name}"
        );
        assert_eq!(
            labels.get("kubesphere.io/managed").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            labels
                .get("kubesphere.io/protected-resource")
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            labels.get("acme.example.com/team").map(String::as_str),
            Some("platform")
        );
        assert_eq!(
            ns.annotations()
                .get("acme.example.com/owner")
                .map(String::as_str),
            Some("ops")
        );
        for fin in ["kubesphere.io/cascading-deletion", "acme.example.com/keep"] {
            assert!(
                ns.finalizers().iter().any(|x| x == fin),
                "{name} lacks {fin}"
            );
        }
        assert!(ns.status.and_then(|s| s.phase).as_deref() == Some("Active"));
    }

    // The extension's release record decodes and is the one its InstallPlan names.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), EXTENSION_NAMESPACE);
    let secret = secrets
        .get(&format!("sh.helm.release.v1.{EXTENSION}.v1"))
        .await
        .expect("release secret");
    assert_eq!(secret.type_.as_deref(), Some("helm.sh/release.v1"));
    let data = secret
        .data
        .and_then(|mut d| d.remove("release"))
        .expect("release data");
    let release = Release::decode(&data.0).expect("decode the release");
    let plan = get(&client, find(f, "InstallPlan", None, EXTENSION)).await;
    assert_eq!(plan.data["status"]["releaseName"], release.name.as_str());
    assert_eq!(
        plan.data["status"]["targetNamespace"],
        release.namespace.as_str()
    );

    // The extension's APIService is unavailable (its Service is gone); the foreign one is fine.
    let apiservices: Api<APIService> = Api::all(client.clone());
    let available = |name: &'static str| {
        let apiservices = apiservices.clone();
        async move {
            for _ in 0..50 {
                let a = apiservices.get(name).await.expect("APIService");
                let conditions = a.status.and_then(|s| s.conditions).unwrap_or_default();
                if let Some(c) = conditions.iter().find(|c| c.type_ == "Available") {
                    return c.status.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            panic!("APIService {name} has no Available condition");
        }
    };
    assert_eq!(available(EXTENSION_APISERVICE).await, "False");
    assert_eq!(
        available(kubesweep_fixtures::decoys::ACME_APISERVICE).await,
        "True"
    );

    // Everything, decoys included, is found; summary agrees with the footprint.
    let s = summary(&client, f).await.expect("summary");
    let missing: Vec<_> = s.rows.iter().filter(|r| r.found != r.expected).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    let terminating: usize = s.rows.iter().map(|r| r.terminating).sum();
    assert_eq!(terminating, f.terminating().count());
    assert!(f.decoys().count() >= 25, "{} decoys", f.decoys().count());

    teardown(&client, f, &opts).await.expect("teardown");
}

#[tokio::test]
async fn seeding_twice_is_idempotent_and_snapshots_are_stable() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let opts = SeedOptions::default();
    let first = seed(&client, &opts).await.expect("first seed");
    let _teardown = teardown_on_panic(&first.footprint, &opts);
    let f = &first.footprint;
    let a = snapshot(&client, f).await.expect("snapshot");
    let b = snapshot(&client, f).await.expect("snapshot again");
    assert_eq!(a.diff(&b), Vec::<String>::new());
    assert!(
        a.objects.values().all(Option::is_some),
        "every protected object exists"
    );
    assert_eq!(
        a.objects.len(),
        f.objects
            .iter()
            .filter(|o| o.role != Role::Platform)
            .count()
    );

    let second = seed(&client, &opts)
        .await
        .expect("second seed over the first");
    assert_eq!(&second.footprint, f);
    let c = snapshot(&client, f).await.expect("snapshot after reseed");
    assert_eq!(
        a.diff(&c),
        Vec::<String>::new(),
        "a reseed changes none of the protected objects"
    );
    let s = summary(&client, f).await.expect("summary");
    assert_eq!(s.totals(), (f.objects.len(), f.objects.len()));

    teardown(&client, f, &opts).await.expect("teardown");
}

#[tokio::test]
async fn teardown_restores_the_system_namespaces() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let opts = SeedOptions::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let keys = |ns: &Namespace| {
        (
            ns.labels().clone(),
            ns.annotations().clone(),
            ns.finalizers().to_vec(),
            ns.spec.clone(),
        )
    };
    // Start from a cluster without the footprint, whatever an earlier failed test left.
    let planned = kubesweep_fixtures::footprint(&opts);
    teardown(&client, &planned, &opts)
        .await
        .expect("teardown first");
    let mut before = BTreeMap::new();
    for name in SYSTEM_NAMESPACES {
        before.insert(*name, keys(&namespaces.get(name).await.expect("namespace")));
    }
    let seeded = seed(&client, &opts).await.expect("seed");
    teardown(&client, &seeded.footprint, &opts)
        .await
        .expect("teardown");
    for name in SYSTEM_NAMESPACES {
        let now = keys(&namespaces.get(name).await.expect("namespace"));
        assert_eq!(before[name], now, "{name} back as it was");
    }
    let s = summary(&client, &seeded.footprint).await.expect("summary");
    let left: Vec<_> = s
        .rows
        .iter()
        .filter(|r| r.role != Role::SystemNamespace && r.found > 0)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A test that panics between its seed and its reset must not leave the
/// footprint for the next test: the guard tears it down on unwind.
#[tokio::test]
async fn a_panicking_test_leaves_no_footprint_behind() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let opts = SeedOptions::default();
    let seeded = seed(&client, &opts).await.expect("seed");
    let f = &seeded.footprint;
    let s = summary(&client, f).await.expect("summary");
    assert_eq!(s.totals().0, s.totals().1, "seeded whole: {:?}", s.rows);

    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _teardown = teardown_on_panic(f, &opts);
        panic!("a test failing on purpose");
    }));
    assert!(unwound.is_err());

    let s = summary(&client, f).await.expect("summary");
    let left: Vec<_> = s
        .rows
        .iter()
        .filter(|r| r.role != Role::SystemNamespace && r.found > 0)
        .collect();
    assert!(left.is_empty(), "left behind after the panic: {left:?}");
}
