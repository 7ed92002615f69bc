//! Smoke tests of the local control plane itself: the behaviour every other
//! test relies on comes from the real kube-apiserver and controllers.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kubesweep_fixtures::harness::{shared_client, unique_name};

/// Polls `check` until it returns true or the timeout passes.
async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn config_map(name: &str, namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some([("key".to_string(), "value".to_string())].into()),
        ..Default::default()
    }
}

async fn create_namespace(client: &kube::Client, name: &str) -> Namespace {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace")
}

#[tokio::test]
async fn server_reports_the_pinned_kubernetes_version() {
    let client = shared_client().await;
    let version = client.apiserver_version().await.expect("GET /version");
    assert!(
        version.git_version.starts_with("v1.37."),
        "kube-apiserver reports {}, expected the pinned v1.37.x",
        version.git_version
    );
}

#[tokio::test]
async fn namespace_controller_finalizes_a_deleted_namespace_with_content() {
    let client = shared_client().await;
    let name = unique_name("smoke-ns");
    create_namespace(&client, &name).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    maps.create(&PostParams::default(), &config_map("content", &name))
        .await
        .expect("create configmap");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let gone = eventually(Duration::from_secs(60), || async {
        matches!(namespaces.get_opt(&name).await, Ok(None))
    })
    .await;
    assert!(
        gone,
        "namespace {name} was not finalized by the namespace controller within 60s"
    );
    assert!(
        maps.get_opt("content")
            .await
            .expect("get configmap")
            .is_none(),
        "the namespace's content must be gone with it"
    );
}

#[tokio::test]
async fn garbage_collector_deletes_a_dependent_whose_owner_is_gone() {
    let client = shared_client().await;
    let name = unique_name("smoke-gc");
    create_namespace(&client, &name).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", &name))
        .await
        .expect("create owner");
    let mut dependent = config_map("dependent", &name);
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("owner uid"),
        ..Default::default()
    }]);
    maps.create(&PostParams::default(), &dependent)
        .await
        .expect("create dependent");
    // A bystander without an ownerReference must survive the collection.
    maps.create(&PostParams::default(), &config_map("bystander", &name))
        .await
        .expect("create bystander");

    maps.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    let collected = eventually(Duration::from_secs(60), || async {
        matches!(maps.get_opt("dependent").await, Ok(None))
    })
    .await;
    assert!(
        collected,
        "the garbage collector did not delete the dependent within 60s"
    );
    assert!(
        maps.get_opt("bystander")
            .await
            .expect("get bystander")
            .is_some()
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("clean up namespace");
}
