//! Faults during `apply` (issue 10): SIGINT/SIGTERM in the middle of a run,
//! and the API server going away and coming back. Each runs the real binary
//! as a child process against a real control plane, interrupts it once it
//! has started changing the cluster, and then checks the cluster itself:
//! nothing foreign touched, controllers back, backup directory clean, and a
//! re-run that finishes the job.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::run::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use kubesweep_fixtures::harness::{PrivateControlPlane, cluster_lock, shared_client};
use kubesweep_fixtures::snapshot;
use serde_json::json;

fn assert_interrupted(out: &Output) {
    assert_eq!(out.status.code(), Some(130), "{}", explain(out));
    assert!(stderr(out).contains("interrupted"), "{}", explain(out));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_apply_stops_cleanly_and_a_rerun_finishes() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");

    // One request at a time, so the run is still going when the signal lands.
    let mut run = start(
        &["apply", "--yes", "--max-in-flight", "1"],
        &kubeconfig,
        dir.path(),
    );
    wait_for_first_write(&mut run, dir.path());
    run.signal("INT");
    let out = run.finish();
    assert_interrupted(&out);
    assert!(stderr(&out).contains("not started"), "{}", explain(&out));
    assert_backup_dir_clean(dir.path());
    assert_verdict_clean(&client, &footprint, &before).await;

    let again = kubesweep_as(&["apply", "--yes"], &kubeconfig);
    assert_applied_clean(&again);
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
}

/// A validating webhook that holds every DELETE of the objects labelled
/// `kubesweep-test/hold=<value>`: its URL points at a listener of the test's
/// own that accepts connections and never answers, so such a DELETE stays in
/// flight until the webhook's timeout (30 s, then ignored). The test learns
/// the exact moment a request is held from the listener.
struct HeldDeletes {
    name: String,
    held: std::sync::mpsc::Receiver<()>,
}

const HOLD_LABEL: &str = "kubesweep-test/hold";

impl HeldDeletes {
    async fn register(client: &kube::Client, resource: &str, value: &str) -> Self {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("address").port();
        let (tx, held) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Kept open and unanswered: the API server waits for the TLS
            // handshake until the webhook's timeout.
            let mut open = Vec::new();
            for stream in listener.incoming().map_while(Result::ok) {
                open.push(stream);
                let _ = tx.send(());
            }
        });
        let name = kubesweep_fixtures::harness::unique_name("kubesweep-test-hold");
        let webhook: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "hold.kubesweep-test.example.com",
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/hold")},
                "rules": [{
                    "operations": ["DELETE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": [resource],
                }],
                "objectSelector": {"matchLabels": {HOLD_LABEL: value}},
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 30,
            }],
        }))
        .expect("webhook");
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &webhook)
            .await
            .expect("create the holding webhook");
        Self { name, held }
    }

    /// Waits until the API server holds a request at the webhook.
    fn wait_until_held(&self) {
        self.held
            .recv_timeout(Duration::from_secs(180))
            .expect("no DELETE reached the holding webhook within 3 minutes");
    }

    async fn remove(self, client: &kube::Client) {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .delete(&self.name, &Default::default())
            .await
            .expect("delete the holding webhook");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_aborts_at_once_and_a_rerun_finishes() {
    use k8s_openapi::api::core::v1::Namespace;
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    // A platform namespace whose DELETE the API server holds: a request is
    // certainly in flight when the signals land, so the first SIGINT has
    // something to wait for and only the second can end the run at once.
    let held_value = kubesweep_fixtures::harness::unique_name("abort");
    let held = HeldDeletes::register(&client, "namespaces", &held_value).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            "kubesphere-controls-system",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {HOLD_LABEL: held_value}}})),
        )
        .await
        .expect("label the held namespace");
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");

    let mut run = start(
        &["apply", "--yes", "--max-in-flight", "1"],
        &kubeconfig,
        dir.path(),
    );
    wait_for_first_write(&mut run, dir.path());
    held.wait_until_held();
    run.signal("INT");
    run.wait_for_line("kubesweep: interrupted: finishing");
    let signalled = Instant::now();
    run.signal("INT");
    let out = run.finish();
    let took = signalled.elapsed();
    held.remove(&client).await;
    assert_eq!(out.status.code(), Some(130), "{}", explain(&out));
    assert!(
        stderr(&out).contains("kubesweep: aborted"),
        "{}",
        explain(&out)
    );
    // At once: well before the held request's 30 s timeout could end it.
    assert!(
        took < Duration::from_secs(10),
        "the second SIGINT took {took:?} to end the run"
    );
    assert_backup_dir_clean(dir.path());
    assert_verdict_clean(&client, &footprint, &before).await;

    let again = kubesweep_as(&["apply", "--yes"], &kubeconfig);
    assert_applied_clean(&again);
    reset(&client, &footprint).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_a_backup_leaves_no_partial_file_and_changes_nothing() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");

    let run = start(&["apply", "--yes"], &kubeconfig, dir.path());
    // Printed right before the backup starts.
    run.wait_for_line("applying:");
    run.signal("INT");
    let out = run.finish();
    assert_eq!(out.status.code(), Some(130), "{}", explain(&out));
    // The signal lands while the backup is collected or written (it takes
    // longer than `kill` does): nothing may have changed.
    assert!(
        stderr(&out).contains("interrupted before any change; nothing was changed"),
        "{}",
        explain(&out)
    );
    assert!(audit_file(dir.path()).is_none(), "{}", explain(&out));
    if backup_dir(dir.path()).exists() {
        assert_backup_dir_clean(dir.path());
    }
    let after = snapshot(&client, &footprint).await.expect("snapshot");
    assert_eq!(
        before, after,
        "an apply interrupted before its first change changed the cluster"
    );

    // `kubesweep backup -o FILE` on its own: the same, into a directory of
    // its own choosing.
    let out_dir = tempfile::tempdir().expect("scratch");
    let target = out_dir.path().join("before-leaving.tar.gz");
    let run = start(&["backup", "-o", utf8(&target)], &kubeconfig, dir.path());
    run.wait_for_line("backup: writing");
    run.signal("INT");
    let out = run.finish();
    assert_eq!(out.status.code(), Some(130), "{}", explain(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", explain(&out));
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .expect("output dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "an interrupted backup left {left:?}");
    reset(&client, &footprint).await;
}

/// Seeds a platform controller Deployment outside any release (as a half
/// installed ks-core leaves it) and waits until it has a pod.
async fn running_controller(client: &kube::Client) -> Api<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kubesphere-system");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "ks-controller-manager", "namespace": "kubesphere-system"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "ks-controller-manager"}},
            "template": {
                "metadata": {"labels": {"app": "ks-controller-manager"}},
                "spec": {"containers": [{"name": "manager", "image": "kubesphere/ks-controller-manager:v4.1.3"}]}
            }
        }
    }))
    .expect("deployment");
    // Left over by an earlier failed run: back to the seeded state.
    let _ = deployments
        .delete("ks-controller-manager", &Default::default())
        .await;
    for _ in 0..100 {
        match deployments
            .create(&PostParams::default(), &deployment)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create controller: {e}"),
        }
    }
    for _ in 0..100 {
        let d = deployments.get("ks-controller-manager").await.expect("get");
        if d.status.and_then(|s| s.replicas).unwrap_or(0) > 0 {
            return deployments;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the deployment controller should have created a pod");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_after_stop_controllers_scales_them_back() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let deployments = running_controller(&client).await;
    let dir = tempfile::tempdir().expect("scratch");

    let mut run = start(
        &[
            "apply",
            "--yes",
            "--stop-controllers",
            "--max-in-flight",
            "1",
        ],
        &kubeconfig,
        dir.path(),
    );
    // The first audit line is the scale-down.
    wait_for_first_write(&mut run, dir.path());
    run.signal("TERM");
    let out = run.finish();
    assert_interrupted(&out);
    let replicas = deployments
        .get("ks-controller-manager")
        .await
        .expect("the controller Deployment is still there")
        .spec
        .replicas;
    assert_eq!(replicas, Some(2), "{}", explain(&out));
    assert_backup_dir_clean(dir.path());

    let again = kubesweep_as(&["apply", "--yes", "--stop-controllers"], &kubeconfig);
    assert_applied_clean(&again);
    reset(&client, &footprint).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_rides_out_an_api_server_restart() {
    // Its own control plane: the test stops kube-apiserver.
    let plane = PrivateControlPlane::start();
    let client = plane.client().await;
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");

    let mut run = start(
        &["apply", "--yes", "--max-in-flight", "1"],
        plane.kubeconfig(),
        dir.path(),
    );
    wait_for_first_write(&mut run, dir.path());
    plane.stop("kube-apiserver");
    // Longer than the ~10 s the retries alone used to ride out.
    std::thread::sleep(Duration::from_secs(15));
    plane.start_component("kube-apiserver");
    let out = run.finish();
    assert_applied_clean(&out);
    assert_backup_dir_clean(dir.path());
    assert_verdict_clean(&client, &footprint, &before).await;

    let again = kubesweep_as(&["verify"], plane.kubeconfig());
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
}

/// Puts a foreign finalizer on one pod of the controller, so that scaling
/// it down cannot make its pods go; returns the pod's name. (Without a node,
/// pods vanish as soon as they are deleted: a short wait budget alone makes
/// the outcome a race.)
async fn hold_a_controller_pod(client: &kube::Client) -> String {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kubesphere-system");
    let selector = kube::api::ListParams::default().labels("app=ks-controller-manager");
    for _ in 0..150 {
        let found = pods.list(&selector).await.expect("list pods").items;
        if let Some(pod) = found.first() {
            let name = pod.metadata.name.clone().expect("pod name");
            pods.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"finalizers": [HOLD]}})),
            )
            .await
            .expect("hold the pod");
            return name;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the controller's ReplicaSet should have created a pod");
}

/// The finalizer that holds a controller pod in the tests.
const HOLD: &str = "kubesweep.test/hold";

async fn release_pod(client: &kube::Client, name: &str) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kubesphere-system");
    let _ = pods
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn controllers_that_do_not_stop_in_time_are_scaled_back() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let deployments = running_controller(&client).await;
    let held = hold_a_controller_pod(&client).await;

    // A pod that cannot go: the scale-down happened, the stop failed, and
    // the run ends (exit 7) after scaling the controllers back.
    let out = kubesweep_as(
        &[
            "apply",
            "--yes",
            "--stop-controllers",
            "--wait-timeout",
            "3",
        ],
        &kubeconfig,
    );
    release_pod(&client, &held).await;
    assert_eq!(out.status.code(), Some(7), "{}", explain(&out));
    assert!(
        stderr(&out).contains("could not be stopped")
            && stderr(&out).contains("scaling platform controllers back up"),
        "{}",
        explain(&out)
    );
    let replicas = deployments
        .get("ks-controller-manager")
        .await
        .expect("the controller Deployment is still there")
        .spec
        .replicas;
    assert_eq!(replicas, Some(2), "{}", explain(&out));

    let again = kubesweep_as(&["apply", "--yes", "--stop-controllers"], &kubeconfig);
    assert_applied_clean(&again);
    reset(&client, &footprint).await;
}
