//! The whole library pipeline on a seeded KubeSphere 4.x footprint:
//! stop controllers → discover → plan → execute → verify, then the foreign
//! decoys must be byte-identical and nothing of the platform may be left.
//! Uses the fixture's fixed names, so it takes the cluster lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kubesweep::execute::{ExecuteOptions, NoProgress};
use kubesweep::inventory::ClusterIdentity;
use kubesweep::plan::PlanOptions;
use kubesweep::profile::Profile;
use kubesweep::{discover, execute, plan, preflight, verify};
use kubesweep_fixtures::harness::{cluster_lock, shared_config, teardown_on_panic};
use kubesweep_fixtures::{Role, SeedOptions, seed, snapshot, teardown};

async fn client() -> Client {
    kubesweep::cluster::client_from_config(shared_config().await).expect("client")
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // the harness lock serialises whole tests by design
async fn seeded_kubesphere_is_removed_completely_and_decoys_stay_identical() {
    let _lock = cluster_lock();
    let client = client().await;
    let opts = SeedOptions::default();
    let seeded = seed(&client, &opts).await.expect("seed");
    let _teardown = teardown_on_panic(&seeded.footprint, &opts);
    let footprint = &seeded.footprint;
    let before = snapshot(&client, footprint).await.expect("snapshot before");

    let profile = Profile::builtin("kubesphere").expect("builtin profile");
    let kube_system: Namespace = Api::all(client.clone()).get("kube-system").await.unwrap();
    let cluster = ClusterIdentity {
        kube_system_uid: kube_system.metadata.uid.unwrap(),
        server: String::new(),
        context: None,
    };

    let running = preflight::running_controllers(&client, &profile)
        .await
        .expect("controllers");
    let stopped = preflight::stop_controllers(&client, &running, Duration::from_secs(60)).await;
    assert!(stopped.all_stopped(), "{stopped:?}");

    let inventory = discover::discover(&client, &profile, &cluster)
        .await
        .expect("discover");
    let options = PlanOptions::default();
    let plan = plan::plan(&profile, &inventory, &options);
    assert!(!plan.is_empty(), "the seeded footprint needs a plan");
    let needed = preflight::required_permissions(&plan);
    let missing = preflight::missing_permissions(&client, &needed)
        .await
        .expect("reviews");
    assert!(missing.is_empty(), "admin lacks {missing:?}");

    let exec_options = ExecuteOptions {
        wait_timeout: Duration::from_secs(120),
        ..ExecuteOptions::default()
    };
    let report = execute::execute(&client, &plan, &exec_options, &NoProgress)
        .await
        .expect("execute");
    let failures: Vec<_> = report.failures().collect();
    assert!(failures.is_empty(), "failures: {failures:#?}");
    assert!(report.is_success(), "{report:#?}");

    let verified = verify::verify(&client, &profile, &cluster, &options)
        .await
        .expect("verify");
    assert!(
        verified.is_clean(),
        "leftovers: {:#?}\nissues: {:#?}",
        verified.leftovers,
        verified.issues
    );

    let after = snapshot(&client, footprint).await.expect("snapshot after");
    let decoy_keys: Vec<String> = footprint
        .with_role(Role::Foreign)
        .map(|o| o.key.to_string())
        .collect();
    let damaged: Vec<String> = before
        .changes(&after)
        .iter()
        .filter(|c| decoy_keys.contains(&c.object))
        .map(ToString::to_string)
        .collect();
    assert!(damaged.is_empty(), "foreign objects changed: {damaged:#?}");

    // Running the same plan again is a no-op: everything is already gone.
    let again = execute::execute(&client, &plan, &exec_options, &NoProgress)
        .await
        .expect("execute again");
    assert_eq!(again.counts.failed, 0, "{again:#?}");

    teardown(&client, footprint, &opts).await.expect("teardown");
}
