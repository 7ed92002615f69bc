//! Faults of the cluster around `apply` (issue 10), each on the seeded
//! KubeSphere 4.1 footprint of the shared control plane, running the real
//! binary:
//!
//! - a platform controller still alive outside any Deployment the preflight
//!   check knows: it re-creates a webhook configuration the run deletes and
//!   re-adds a KubeSphere finalizer the run strips, and the run names those
//!   objects and the controller's field manager;
//! - a foreign `Fail` validating webhook on namespaces with a dead backend:
//!   kept, and named as what blocks the run;
//! - a platform namespace held by finalizers of another owner (on the
//!   namespace itself and on an object in another platform namespace): kept
//!   as it is, the finalizer named;
//! - the run's permissions revoked while it runs (403): it stops at the
//!   refused request, naming verb, object and identity.
//!
//! The seeded footprint's aggregated APIService of the platform, whose
//! Service is gone (discovery of `monitoring.kubesphere.io` fails), is part
//! of every run here; the first test checks that it is gone afterwards. A
//! CRD whose conversion webhook is gone is `unlisted_instances.rs`, a pod
//! held by a foreign finalizer `ownership_namespaces.rs`.
//!
//! After each fault the tests check the cluster itself: nothing foreign
//! changed (the safety verdict against a snapshot taken before), the backup
//! archives verify, and a re-run ends clean once the fault is gone (or,
//! while it lasts, ends the same way). Every test applies to the whole
//! cluster, so each takes the cluster lock.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::run::*;
use common::*;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use kubesweep_fixtures::kubesphere_v4::{EXTENSION_APISERVICE, project_name, workspace_name};
use kubesweep_fixtures::{client_from_kubeconfig, snapshot};
use serde_json::json;

/// The field manager of the test's stand-in for a live KubeSphere controller.
const CONTROLLER: &str = "ks-controller-manager";
/// A KubeSphere webhook configuration the seeded footprint has (policy
/// `Ignore`, so its dead backend blocks nothing when it comes back).
const PLATFORM_WEBHOOK: &str = "validator.user.iam.kubesphere.io";
/// The 3.x finalizer KubeSphere's namespace controller puts on projects.
const PROJECT_FINALIZER: &str = "finalizers.kubesphere.io/namespaces";

/// Runs `kubesweep args` with its backups in `dir`, off the async runtime
/// (so tasks acting on the cluster meanwhile keep running).
async fn run_in(args: &[&str], kubeconfig: &Path, dir: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (kubeconfig, dir) = (kubeconfig.to_owned(), dir.to_owned());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start(&args, &kubeconfig, &dir).finish()
    })
    .await
    .expect("run kubesweep")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line of `text` that mentions `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

/// The seeded platform webhook as a live controller writes it: a server-side
/// apply, under the controller's field manager (re-creates it when gone).
async fn controller_applies_webhook(
    client: &Client,
) -> kube::Result<ValidatingWebhookConfiguration> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": PLATFORM_WEBHOOK},
        "webhooks": [{
            "name": PLATFORM_WEBHOOK,
            "clientConfig": {"service": {"namespace": "kubesphere-system", "name": "ks-controller-manager",
                                         "path": "/validate-iam-kubesphere-io-v1beta1-user", "port": 443}},
            "rules": [{"apiGroups": ["iam.kubesphere.io"], "apiVersions": ["v1beta1"],
                       "resources": ["users"], "operations": ["CREATE", "UPDATE"]}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "matchPolicy": "Equivalent",
        }],
    });
    api.patch(
        PLATFORM_WEBHOOK,
        &PatchParams::apply(CONTROLLER).force(),
        &Patch::Apply(config),
    )
    .await
}

/// The controller's finalizer on a user project, added as KubeSphere's
/// namespace controller does: an update of what it read (not a server-side
/// apply: the seed applied the whole namespace under the same field manager,
/// and applying only the finalizer would drop the rest).
async fn controller_finalizes_project(client: &Client, project: &str) -> kube::Result<Namespace> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = api.get(project).await?;
    if ns.finalizers().iter().any(|f| f == PROJECT_FINALIZER) {
        return Ok(ns);
    }
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": ns.resource_version()},
        {"op": "add", "path": "/metadata/finalizers/-", "value": PROJECT_FINALIZER},
    ]))
    .expect("patch");
    let params = PatchParams {
        field_manager: Some(CONTROLLER.into()),
        ..PatchParams::default()
    };
    api.patch(project, &params, &Patch::Json::<()>(patch)).await
}

/// A stand-in for a KubeSphere controller that still runs somewhere the
/// preflight check cannot see (another cluster's kubeconfig, a renamed
/// Deployment): every 200 ms it puts the webhook configuration and the
/// project's finalizer back. Stopped through the flag; returns how many
/// writes changed something.
fn spawn_live_controller(
    client: Client,
    project: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let changed = AtomicUsize::new(0);
        let mut last_versions = (String::new(), String::new());
        while !stop.load(Ordering::Relaxed) {
            // Errors (a conflict with the run's own write) are retried on
            // the next round, as a controller's work queue does.
            let webhook = controller_applies_webhook(&client).await.ok();
            let project = controller_finalizes_project(&client, &project).await.ok();
            let versions = (
                webhook
                    .and_then(|w| w.resource_version())
                    .unwrap_or_default(),
                project
                    .and_then(|p| p.resource_version())
                    .unwrap_or_default(),
            );
            if versions != last_versions {
                changed.fetch_add(1, Ordering::Relaxed);
                last_versions = versions;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        changed.into_inner()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_platform_controller_is_named_with_the_objects_it_keeps_changing() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");
    let project = project_name(&workspace_name(0), 1);
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let seeded_webhook = webhooks
        .get(PLATFORM_WEBHOOK)
        .await
        .expect("seeded webhook");
    // The seeded platform APIService has no backend: discovery of its group fails.
    let api_services: Api<APIService> = Api::all(client.clone());
    assert!(
        api_services
            .get_opt(EXTENSION_APISERVICE)
            .await
            .expect("read")
            .is_some()
    );

    // One round before the run, so the controller's ownership of what the
    // seed wrote is in place (a controller that runs has long done it).
    controller_applies_webhook(&client)
        .await
        .expect("apply webhook");
    controller_finalizes_project(&client, &project)
        .await
        .expect("finalize project");
    let stop = Arc::new(AtomicBool::new(false));
    let controller = spawn_live_controller(client.clone(), project.clone(), stop.clone());

    let out = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    // The cluster as the run left it, the controller still going.
    let webhook_after = webhooks.get_opt(PLATFORM_WEBHOOK).await.expect("read");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let project_after = namespaces.get(&project).await.expect("project kept");
    stop.store(true, Ordering::Relaxed);
    let changes = controller.await.expect("controller task");

    // The run went through; what the controller undid is left, and named
    // with what the run had done to it and who changed it since.
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(
        changes >= 2,
        "the controller undid nothing: {}",
        explain(&out)
    );
    let report = stdout(&out);
    assert!(
        report.contains("changed during this run by other writers"),
        "{}",
        explain(&out)
    );
    let webhook_line = line_with(
        &report,
        &format!(
            "validatingwebhookconfigurations.admissionregistration.k8s.io/{PLATFORM_WEBHOOK}: "
        ),
    )
    .unwrap_or_else(|| panic!("the re-created webhook is not named:\n{}", explain(&out)));
    assert!(
        webhook_line.contains("re-created after this run did delete")
            && webhook_line.contains(&format!("by {CONTROLLER} (Apply at ")),
        "{webhook_line}\n{}",
        explain(&out)
    );
    let project_line = line_with(&report, &format!("namespaces/{project}: "))
        .unwrap_or_else(|| panic!("the re-finalized project is not named:\n{}", explain(&out)));
    assert!(
        project_line.contains("changed again after this run did strip metadata")
            && project_line.contains(&format!("by {CONTROLLER} (Update at ")),
        "{project_line}\n{}",
        explain(&out)
    );
    // What the report says is what the cluster holds: a new webhook
    // configuration, the project finalized again, its foreign finalizer kept.
    let webhook_after = webhook_after.expect("the controller re-created the webhook");
    assert_ne!(webhook_after.uid(), seeded_webhook.uid());
    assert!(
        project_after
            .finalizers()
            .contains(&PROJECT_FINALIZER.to_owned())
            && project_after
                .finalizers()
                .contains(&"acme.example.com/keep".to_owned()),
        "{:?}",
        project_after.finalizers()
    );
    // The dead platform APIService went regardless.
    assert!(
        api_services
            .get_opt(EXTENSION_APISERVICE)
            .await
            .expect("read")
            .is_none(),
        "{}",
        explain(&out)
    );
    assert_backup_intact(dir.path());

    // The controller stopped: a re-run finishes, nothing foreign changed.
    let again = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    assert_applied_clean(&again);
    assert!(
        !stdout(&again).contains("changed during this run"),
        "{}",
        explain(&again)
    );
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
}

/// A foreign admission webhook that rejects every namespace update and
/// deletion: `Fail`, and its Service does not exist.
const GUARD: &str = "namespace-guard.example.com";

async fn remove_guard(client: &Client) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(GUARD, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_fail_webhook_on_namespaces_is_kept_and_named_as_the_blocker() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    remove_guard(&client).await;
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let guard: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": GUARD},
        "webhooks": [{
            "name": GUARD,
            "clientConfig": {"service": {"namespace": "example-guard", "name": "guard", "path": "/validate", "port": 443}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"],
                       "operations": ["UPDATE", "DELETE"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
        }],
    }))
    .expect("webhook");
    let guard = api
        .create(&PostParams::default(), &guard)
        .await
        .expect("create the guard");

    let first = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    // While the guard stays, a re-run ends the same way.
    let second = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    let kept = api.get_opt(GUARD).await.expect("read the guard");
    // Its owner removes it (before any assertion: it blocks every namespace
    // change on the shared cluster).
    remove_guard(&client).await;

    let kept = kept.expect("kubesweep must not delete a foreign webhook");
    assert_eq!(kept.uid(), guard.uid());
    assert_eq!(kept.resource_version(), guard.resource_version());
    for out in [&first, &second] {
        assert_eq!(out.status.code(), Some(1), "{}", explain(out));
        // Which webhook blocks what: the admission failure of each refused
        // change, the webhook named, and the summary line.
        let text = stderr(out);
        let blocked = line_with(&text, &format!("blocked by admission webhook \"{GUARD}\""))
            .unwrap_or_else(|| panic!("the guard is not named as the blocker:\n{}", explain(out)));
        assert!(blocked.contains("namespaces/kube-system"), "{blocked}");
        assert!(
            text.contains("platform metadata could not be removed from kept objects"),
            "{}",
            explain(out)
        );
    }
    assert_verdict_clean(&client, &footprint, &before).await;
    assert_backup_intact(dir.path());

    let again = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    assert_applied_clean(&again);
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
}

/// A finalizer of another program, which kubesweep must never remove.
const KEEP: &str = "example.com/keep";

/// Removes [`KEEP`] from whatever the test put it on, as its owner would.
async fn release_keep(client: &Client, held_namespace: &str, held_config_map: (&str, &str)) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Ok(ns) = namespaces.get(held_namespace).await {
        let rest: Vec<String> = ns
            .finalizers()
            .iter()
            .filter(|f| *f != KEEP)
            .cloned()
            .collect();
        let _ = namespaces
            .patch(
                held_namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
            )
            .await;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), held_config_map.0);
    let _ = config_maps
        .patch(
            held_config_map.1,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

async fn gone(client: &Client, namespace: &str, within: Duration) -> bool {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if namespaces.get_opt(namespace).await.expect("read").is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_namespaces_held_by_a_foreign_finalizer_are_reported_and_left_to_its_owner() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let kubeconfig = test_kubeconfig();
    let held_ns = "kubesphere-controls-system";
    let held_cm = ("kubesphere-system", "held-by-example");
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");
    // Another program's finalizer on a platform namespace itself, and on an
    // object in another one.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut finalizers = namespaces
        .get(held_ns)
        .await
        .expect("read")
        .finalizers()
        .to_vec();
    finalizers.push(KEEP.to_owned());
    namespaces
        .patch(
            held_ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .expect("hold the namespace");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), held_cm.0);
    let _ = config_maps
        .delete(held_cm.1, &DeleteParams::default())
        .await;
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": held_cm.1, "finalizers": [KEEP]}}))
                .expect("config map"),
        )
        .await
        .expect("hold a config map");

    let out = run_in(
        &["apply", "--yes", "--wait-timeout", "15"],
        &kubeconfig,
        dir.path(),
    )
    .await;
    let ns_after = namespaces.get_opt(held_ns).await.expect("read");
    let cm_after = config_maps.get_opt(held_cm.1).await.expect("read");
    release_keep(&client, held_ns, held_cm).await;

    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    // The finalizers stay where they were, with everyone else's gone.
    let ns_after = ns_after.expect("the held namespace stays");
    assert!(ns_after.metadata.deletion_timestamp.is_some());
    assert_eq!(
        ns_after.finalizers(),
        [KEEP.to_owned()],
        "{}",
        explain(&out)
    );
    let cm_after = cm_after.expect("the held config map stays");
    assert_eq!(
        cm_after.finalizers(),
        [KEEP.to_owned()],
        "{}",
        explain(&out)
    );
    // Reported as held by that finalizer, naming it: the wait's diagnosis
    // (stderr) and the closing verification (stdout).
    let text = stderr(&out);
    let waited = line_with(&text, &format!("namespaces/{held_ns} ("))
        .unwrap_or_else(|| panic!("{held_ns} is not reported:\n{}", explain(&out)));
    assert!(waited.contains(&format!("finalizers: {KEEP}")), "{waited}");
    assert!(
        text.contains(&format!(
            "ConfigMap {}/{} (finalizers: {KEEP})",
            held_cm.0, held_cm.1
        )),
        "{}",
        explain(&out)
    );
    assert!(
        stdout(&out).contains(&format!(
            "held by finalizer(s) not the platform's, which kubesweep does not remove (their owner must): {KEEP}"
        )),
        "{}",
        explain(&out)
    );
    // Only Kubernetes' namespace controller wrote them meanwhile (their
    // status), which is no platform controller undoing the run.
    assert!(
        !stdout(&out).contains("changed during this run"),
        "{}",
        explain(&out)
    );
    assert_verdict_clean(&client, &footprint, &before).await;
    assert_backup_intact(dir.path());

    // Its owner let go: the namespaces go, and a re-run ends clean.
    for ns in [held_ns, held_cm.0] {
        assert!(
            gone(&client, ns, Duration::from_secs(60)).await,
            "{ns} stays"
        );
    }
    let again = run_in(&["apply", "--yes"], &kubeconfig, dir.path()).await;
    assert_applied_clean(&again);
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
}

/// The identity the permission test runs as (impersonated by the admin).
const OPERATOR: &str = "kubesweep-test-operator";

/// A kubeconfig that impersonates [`OPERATOR`]: the shared cluster's, with
/// `as:` in its user (kube-rs sends the `Impersonate-User` header).
fn operator_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let admin = std::fs::read_to_string(test_kubeconfig()).expect("read kubeconfig");
    assert!(
        admin.contains("\n  user:\n"),
        "unexpected kubeconfig layout"
    );
    let operator = admin.replacen(
        "\n  user:\n",
        &format!("\n  user:\n    as: {OPERATOR}\n"),
        1,
    );
    let path = dir.join("operator.kubeconfig");
    std::fs::write(&path, operator).expect("write kubeconfig");
    path
}

async fn remove_operator_rbac(client: &Client) {
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let _ = bindings.delete(OPERATOR, &DeleteParams::default()).await;
    let _ = roles.delete(OPERATOR, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permission_revoked_mid_run_stops_at_the_refused_request_naming_verb_and_resource() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    remove_operator_rbac(&client).await;
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let dir = tempfile::tempdir().expect("scratch");
    let kubeconfig = operator_kubeconfig(dir.path());

    // Everything, through one binding the test deletes mid-run.
    let roles: Api<ClusterRole> = Api::all(client.clone());
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": OPERATOR},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            }))
            .expect("role"),
        )
        .await
        .expect("create role");
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": OPERATOR},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR}],
            }))
            .expect("binding"),
        )
        .await
        .expect("create binding");
    // The authorizer learns the binding from its informer: wait until the
    // operator may read what the plan starts with.
    let operator = client_from_kubeconfig(Some(&kubeconfig), None)
        .await
        .expect("operator client");
    let operator_webhooks: Api<ValidatingWebhookConfiguration> = Api::all(operator);
    let mut allowed = false;
    for _ in 0..50 {
        if operator_webhooks.list(&Default::default()).await.is_ok() {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "the operator's binding never took effect");

    // One request at a time, so the revocation lands mid-run.
    let mut run = start(
        &[
            "apply",
            "--yes",
            "--max-in-flight",
            "1",
            "--wait-timeout",
            "20",
        ],
        &kubeconfig,
        dir.path(),
    );
    wait_for_first_write(&mut run, dir.path());
    bindings
        .delete(OPERATOR, &DeleteParams::default())
        .await
        .expect("revoke");
    let out = run.finish();
    remove_operator_rbac(&client).await;

    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));
    // One line: verb, object, identity.
    let text = stderr(&out);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kubesweep: permission denied during the run")
            && last.contains(&format!("User \"{OPERATOR}\" cannot "))
            && last.contains(" resource \""),
        "{}",
        explain(&out)
    );
    // The refused request was the last: after a failed write nothing was sent.
    let audit =
        std::fs::read_to_string(audit_file(dir.path()).expect("audit record")).expect("read audit");
    let results: Vec<String> = audit
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("audit line");
            v["result"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    if let Some(first_failed) = results.iter().position(|r| r == "failed") {
        assert_eq!(
            first_failed,
            results.len() - 1,
            "writes after the refused one:\n{audit}"
        );
    }
    assert!(!results.is_empty(), "{audit}");
    assert_verdict_clean(&client, &footprint, &before).await;
    assert_backup_intact(dir.path());

    // With full permissions a re-run finishes.
    let again = run_in(&["apply", "--yes"], &test_kubeconfig(), dir.path()).await;
    assert_applied_clean(&again);
    assert_verdict_clean(&client, &footprint, &before).await;
    reset(&client, &footprint).await;
}
