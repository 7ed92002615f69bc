//! `kubesweep apply --hook` as a Helm post-delete hook Job runs it, without
//! a pod: the process gets a pod's environment (`KUBERNETES_SERVICE_HOST`
//! and `_PORT` pointing at the test API server, a ServiceAccount token from
//! a TokenRequest and the cluster's CA in files named by the test-only
//! overrides, a `KUBECONFIG` that does not exist) and runs under a hook
//! namespace, ServiceAccount and ClusterRoleBinding made as the chart makes
//! them. The full KubeSphere 4.1 fixture is seeded, plus the records of
//! `ks-core` in `kubesphere-system` whose latest revision says
//! `uninstalling`, as Helm leaves them while its post-delete hooks run.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client, shared_config, unique_name};
use kubesweep_fixtures::helm::{Chart, ChartMetadata, Release, ReleaseInfo};
use kubesweep_fixtures::snapshot;
use serde_json::{Value, json};

const PLATFORM_NS: &str = "kubesphere-system";
/// A platform namespace the failing run finds held by another program.
const HELD_NS: &str = "kubesphere-controls-system";
const KEEP: &str = "example.com/keep";
const POLICY: &str = "kubesweep-keep-helm-records-kubesphere-system";

/// The hook's own objects, as the chart makes them.
struct Hook {
    namespace: String,
    account: String,
    binding: String,
    role: String,
}

/// Writes ks-core's records: revision 1 `superseded`, revision 2
/// `uninstalling` (Helm has deleted the release's objects and runs its
/// post-delete hooks). Returns their names.
async fn ks_core_records(client: &Client) -> Vec<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), PLATFORM_NS);
    let mut names = Vec::new();
    for (version, status) in [(1, "superseded"), (2, "uninstalling")] {
        let release = Release {
            name: "ks-core".into(),
            namespace: PLATFORM_NS.into(),
            version,
            info: ReleaseInfo {
                status: status.into(),
                first_deployed: "2026-01-01T00:00:00Z".into(),
                last_deployed: "2026-01-02T00:00:00Z".into(),
                description: if status == "uninstalling" {
                    "Deletion in progress (or silently failed)".into()
                } else {
                    "Upgrade complete".into()
                },
            },
            chart: Chart {
                metadata: ChartMetadata {
                    name: "ks-core".into(),
                    version: "1.1.4".into(),
                    app_version: "v4.1.3".into(),
                },
            },
            // Helm deleted what the manifest names before the hook ran.
            manifest: "---\n# Source: ks-core/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ks-core-config-gone\n  namespace: kubesphere-system\n".into(),
        };
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {
                "name": release.secret_name(),
                "labels": {"owner": "helm", "name": "ks-core", "status": status, "version": version.to_string()},
            },
            "type": "helm.sh/release.v1",
            "stringData": {"release": release.encode().expect("encode")},
        }))
        .expect("record");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create record");
        names.push(release.secret_name());
    }
    names
}

/// The hook's namespace, ServiceAccount, ClusterRole (reads everywhere,
/// writes only what the hook-mode plan needs: `kubesweep::preflight`'s
/// list for the plan, plus the hand-over's when `with_handover`) and the
/// binding.
async fn hook_objects(client: &Client, with_handover: bool) -> Hook {
    let namespace = unique_name("kubesweep-hook");
    let hook = Hook {
        account: "kubesweep".into(),
        binding: format!("{namespace}-binding"),
        role: format!("{namespace}-role"),
        namespace,
    };
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": hook.namespace}})).expect("ns"),
        )
        .await
        .expect("hook namespace");
    Api::<ServiceAccount>::namespaced(client.clone(), &hook.namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": hook.account}})).expect("sa"),
        )
        .await
        .expect("hook service account");
    Api::<ClusterRole>::all(client.clone())
        .create(
            &PostParams::default(),
            &hook_role(client, &hook.role, with_handover).await,
        )
        .await
        .expect("hook role");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": hook.binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": hook.role},
        "subjects": [{"kind": "ServiceAccount", "name": hook.account, "namespace": hook.namespace}]
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("hook binding");
    hook
}

/// The hook's role: `kubesweep profiles rbac kubesphere` (the chart's
/// files/clusterrole.yaml), plus, `with_handover`, the rules hook mode adds:
/// the policy that keeps the records from the namespace controller, and the
/// encrypted backup kept in the cluster.
async fn hook_role(client: &Client, name: &str, with_handover: bool) -> ClusterRole {
    let profile = kubesweep::profile::Profile::builtin("kubesphere").expect("profile");
    let mut rules: Vec<Value> = kubesweep::rbac::rules(&profile)
        .into_iter()
        .map(|r| json!({"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs}))
        .collect();
    // The cluster's foreign CRDs and aggregated APIs, which discovery lists
    // (the chart's rbac.extraRules for a cluster with such types).
    rules.extend(common::foreign_list_rules(client).await);
    if with_handover {
        rules.extend(hook_mode_rules());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).expect("role")
}

/// The rules hook mode needs beyond the generated role.
fn hook_mode_rules() -> Vec<Value> {
    vec![
        json!({"apiGroups": ["admissionregistration.k8s.io"],
               "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
               "verbs": ["create", "get"]}),
        json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "deletecollection"]}),
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}),
    ]
}

/// A pod's environment for the hook's ServiceAccount: token and CA files in
/// `dir`, the API server's host and port.
async fn pod_environment(client: &Client, hook: &Hook, dir: &Path) -> Vec<(String, String)> {
    let token = Api::<ServiceAccount>::namespaced(client.clone(), &hook.namespace)
        .create_token_request(
            &hook.account,
            &PostParams::default(),
            &TokenRequest::default(),
        )
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token
        .expect("token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).expect("token file");
    let config = shared_config().await;
    let ca_file = dir.join("ca.crt");
    let pem: String = config
        .root_cert
        .as_ref()
        .expect("the test kubeconfig names a CA")
        .iter()
        .map(|der| der_to_pem(der))
        .collect();
    std::fs::write(&ca_file, pem).expect("ca file");
    let host = config.cluster_url.host().expect("host").to_owned();
    let port = config.cluster_url.port_u16().unwrap_or(443).to_string();
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), host),
        ("KUBERNETES_SERVICE_PORT".into(), port),
        (
            "KUBESWEEP_INCLUSTER_TOKEN_FILE".into(),
            utf8(&token_file).into(),
        ),
        ("KUBESWEEP_INCLUSTER_CA_FILE".into(), utf8(&ca_file).into()),
        (
            "KUBESWEEP_TERMINATION_MESSAGE_PATH".into(),
            utf8(&dir.join("termination-log")).into(),
        ),
        // A kubeconfig in the environment must not redirect a hook.
        (
            "KUBECONFIG".into(),
            utf8(&dir.join("no-such-kubeconfig")).into(),
        ),
    ]
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Runs `kubesweep apply --hook` with `env` only (no inherited kubeconfig).
fn run_hook(env: &[(String, String)], dir: &Path, extra: &[&str]) -> (Output, String) {
    let message = dir.join("termination-log");
    let _ = std::fs::remove_file(&message);
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubesweep"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["apply", "--hook", "--backup-dir"])
        .arg(dir.join("backups"))
        .args(extra);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run kubesweep");
    let summary = std::fs::read_to_string(&message)
        .unwrap_or_else(|e| panic!("no termination message ({e})\n{}", explain(&out)));
    (out, summary)
}

/// Every stderr line is a JSON log line.
fn assert_json_lines(out: &Output) {
    let text = stderr(out);
    assert!(!text.trim().is_empty(), "{}", explain(out));
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", explain(out)));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

async fn uid<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .uid()
        .expect("uid")
}

async fn set_keep(client: &Client, on: bool) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Ok(ns) = namespaces.get(HELD_NS).await else {
        return;
    };
    let mut finalizers: Vec<String> = ns
        .finalizers()
        .iter()
        .filter(|f| *f != KEEP)
        .cloned()
        .collect();
    if on {
        finalizers.push(KEEP.into());
    }
    namespaces
        .patch(
            HELD_NS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .expect("patch finalizers");
}

async fn remove_hook(client: &Client, hook: &Hook) {
    let dp = DeleteParams::default();
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&hook.binding, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&hook.role, &dp)
        .await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&hook.namespace, &dp)
        .await;
}

/// Deletes ks-core's records, as Helm's purge would, when the test panics:
/// otherwise `kubesphere-system` stays Terminating and the footprint's own
/// teardown cannot finish. Dropped before the footprint's guard.
struct PurgeOnPanic(Vec<String>);

impl Drop for PurgeOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let records = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Runtime::new() else {
                return;
            };
            runtime.block_on(async {
                let secrets: Api<Secret> = Api::namespaced(shared_client().await, PLATFORM_NS);
                for r in &records {
                    let _ = secrets.delete(r, &DeleteParams::default()).await;
                }
                let _ = Api::<Namespace>::all(shared_client().await)
                    .delete(
                        kubesweep::backup::stored::BACKUP_NAMESPACE,
                        &DeleteParams::default(),
                    )
                    .await;
            });
        })
        .join();
    }
}

/// Polls `check` every 100 ms until it holds or `within` passed; returns
/// the time it took.
async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn hook_mode_leaves_helm_its_records_and_kubesphere_system_goes_after_the_purge() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let footprint = seeded(&client).await;
    let records = ks_core_records(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let _purge = PurgeOnPanic(records.clone());
    let dir = tempfile::tempdir().expect("scratch");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), PLATFORM_NS);
    let record_uids: Vec<String> = {
        let mut v = Vec::new();
        for r in &records {
            v.push(uid(&secrets, r).await);
        }
        v
    };

    // 1. A role without the hand-over's permissions: refused before any change.
    let hook = hook_objects(&client, false).await;
    let env = pod_environment(&client, &hook, dir.path()).await;
    let (out, summary) = run_hook(&env, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(4), "{}", explain(&out));
    assert_json_lines(&out);
    assert!(
        summary.starts_with(
            "kubesweep hook: FAILED (exit 4): the credentials of context (in-cluster) lack"
        ) && summary.contains(
            "create validatingadmissionpolicies.admissionregistration.k8s.io (cluster-wide)"
        ),
        "{summary}"
    );
    assert!(
        Api::<Namespace>::all(client.clone())
            .get(PLATFORM_NS)
            .await
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_none()
    );
    remove_hook(&client, &hook).await;

    // 2. With the full role, but another program's finalizer holds a
    // platform namespace: verify fails, exit 1, and the summary says so.
    let hook = hook_objects(&client, true).await;
    let env = pod_environment(&client, &hook, dir.path()).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &hook.namespace);
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let hook_uids = (
        uid(&namespaces, &hook.namespace).await,
        uid(&accounts, &hook.account).await,
        uid(&bindings, &hook.binding).await,
    );
    set_keep(&client, true).await;
    // The held namespace waits out the whole budget, so it is short; but
    // not shorter than what the rest needs on a loaded machine: the
    // garbage collector removes the `orphan` finalizer of an Orphan delete
    // only once its discovery (resynced every 30 s) knows the just-seeded
    // CRDs, and a PVC's protection finalizer goes at the controller's pace.
    // With 10 s both once outlasted the wait in CI and the run stopped
    // before the held namespace was reported.
    let (out, summary) = run_hook(&env, dir.path(), &["--wait-timeout", "45"]);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert_json_lines(&out);
    assert!(
        summary.starts_with("kubesweep hook: FAILED (exit 1)")
            && summary.contains(" leftover(s)")
            && summary.contains(&format!("left: namespaces/{HELD_NS} (delete)"))
            && summary.contains("backup: NOT kept:"),
        "{summary}"
    );

    // 3. Its owner removes the finalizer; the hook runs again and succeeds.
    // This time with a backup recipient (the chart's backup.recipient).
    set_keep(&client, false).await;
    let identity = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).expect("key");
    }
    let mut env = env;
    env.push((
        "KUBESWEEP_BACKUP_RECIPIENT".into(),
        identity.to_public().to_string(),
    ));
    let (out, summary) = run_hook(&env, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verify: clean"),
        "{}",
        explain(&out)
    );
    assert_json_lines(&out);
    eprintln!("termination message of the successful run:\n{summary}");
    assert!(summary.len() <= 4096);
    assert!(
        summary.starts_with("kubesweep hook: success (exit 0)\n")
            && summary.contains("verify: clean")
            && summary.contains("backup: kept in the cluster, age-encrypted")
            && summary.contains(&format!(
                "namespace {PLATFORM_NS} is Terminating and holds only what Helm purges"
            )),
        "{summary}"
    );

    // The hook's own objects are untouched.
    assert_eq!(
        (
            uid(&namespaces, &hook.namespace).await,
            uid(&accounts, &hook.account).await,
            uid(&bindings, &hook.binding).await,
        ),
        hook_uids
    );
    // The records stay for Helm, the namespace is Terminating, guarded by
    // a policy it owns.
    for (r, u) in records.iter().zip(&record_uids) {
        assert_eq!(&uid(&secrets, r).await, u, "{r}");
    }
    let ns = namespaces.get(PLATFORM_NS).await.expect("namespace");
    assert!(ns.metadata.deletion_timestamp.is_some());
    let ns_uid = ns.uid().expect("uid");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let policy_bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    for owners in [
        policies
            .get(POLICY)
            .await
            .expect("policy")
            .owner_references()
            .to_vec(),
        policy_bindings
            .get(POLICY)
            .await
            .expect("binding")
            .owner_references()
            .to_vec(),
    ] {
        assert!(
            owners
                .iter()
                .any(|o| o.kind == "Namespace" && o.uid == ns_uid),
            "{owners:?}"
        );
    }
    // Everything else in it is gone (the namespace controller emptied it).
    let emptied = within(Duration::from_secs(60), || async {
        let left: Vec<String> = secrets
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        left == records
    })
    .await;
    assert!(
        emptied.is_some(),
        "kubesphere-system still holds more than the records"
    );
    // Nothing foreign changed.
    assert_verdict_clean(&client, &footprint, &before).await;
    // The backup outlives the pod: fetched by its run id, only as ciphertext,
    // and it verifies with the identity and the sha256 the summary gives.
    let fetched = fetch_backup(&summary, dir.path(), &key, &client).await;
    eprintln!("fetched and verified {fetched}");

    // 4. Helm's purge: each record deleted by name (not the namespace
    // controller's identity, not a collection delete).
    for r in &records {
        secrets
            .delete(r, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("Helm's purge of {r}: {e}"));
    }
    let purged = Instant::now();
    let gone = within(Duration::from_secs(150), || async {
        namespaces
            .get_opt(PLATFORM_NS)
            .await
            .expect("read")
            .is_none()
    })
    .await;
    let gone = gone.unwrap_or_else(|| {
        panic!(
            "{PLATFORM_NS} still there {:?} after the purge",
            purged.elapsed()
        )
    });
    eprintln!(
        "kubesphere-system gone {:.1}s after the records were deleted",
        gone.as_secs_f64()
    );
    // The garbage collector takes the policy and its binding with their owner.
    let collected = within(Duration::from_secs(90), || async {
        policies.get_opt(POLICY).await.expect("read").is_none()
            && policy_bindings
                .get_opt(POLICY)
                .await
                .expect("read")
                .is_none()
    })
    .await;
    assert!(
        collected.is_some(),
        "policy or binding left after their owner"
    );
    eprintln!(
        "policy and binding collected {:.1}s after the namespace",
        collected.unwrap_or_default().as_secs_f64()
    );
    // And the hook's objects are still there.
    assert_eq!(uid(&namespaces, &hook.namespace).await, hook_uids.0);

    remove_hook(&client, &hook).await;
    let _ = namespaces
        .delete(
            kubesweep::backup::stored::BACKUP_NAMESPACE,
            &DeleteParams::default(),
        )
        .await;
    reset(&client, &footprint).await;
}

/// `kubesweep backup fetch RUN` as the admin, then `backup inspect` with the
/// identity and the sha256 from the summary; the stored Secrets hold only
/// age ciphertext.
async fn fetch_backup(summary: &str, dir: &Path, key: &Path, client: &Client) -> String {
    let line = summary
        .lines()
        .find(|l| l.starts_with("backup: kept in the cluster"))
        .expect("backup line");
    let sha = line
        .split("sha256 ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .expect("sha256")
        .to_owned();
    let run = line
        .split("backup fetch ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("run")
        .to_owned();
    let stored: Api<Secret> =
        Api::namespaced(client.clone(), kubesweep::backup::stored::BACKUP_NAMESPACE);
    let chunks = stored
        .list(&kube::api::ListParams::default().labels(&format!("kubesweep.io/backup-run={run}")))
        .await
        .expect("list")
        .items;
    assert!(!chunks.is_empty());
    let first = chunks
        .iter()
        .find(|s| s.name_any().ends_with("-000"))
        .expect("first chunk");
    assert!(
        first.data.as_ref().expect("data")["chunk"]
            .0
            .starts_with(b"age-encryption.org/v1"),
        "stored in clear text"
    );
    let file = dir.join("fetched.tar.gz.age");
    let out = kubesweep(&["backup", "fetch", &run, "-o", utf8(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file)
            .expect("fetched")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = kubesweep(&[
        "backup",
        "inspect",
        utf8(&file),
        "--identity",
        utf8(key),
        "--sha256",
        &sha,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Secret"),
        "{}",
        explain(&out)
    );
    // A second fetch never overwrites.
    let again = kubesweep(&["backup", "fetch", &run, "-o", utf8(&file)]);
    assert_eq!(again.status.code(), Some(8), "{}", explain(&again));
    format!("run {run} ({} chunk(s), sha256 {sha})", chunks.len())
}
