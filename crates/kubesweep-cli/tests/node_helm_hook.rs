//! `helm uninstall` runs kubesweep's post-delete hook in a real pod (issue 12,
//! end-to-end): a ks-core-shaped chart (`tests/charts/ks-core`: a few
//! templates, the KubeSphere CRDs in a subchart's `crds/`, the hook chart of
//! `deploy/helm/kubesweep-hook` as a dependency) is installed over the seeded
//! KubeSphere footprint, then uninstalled with the real helm. Helm creates the
//! hook's namespace and RBAC, the scheduler binds the Job's pod to testenv's
//! node, containerd runs kubesweep's image (this build), the pod talks to the
//! API server with the hook's ServiceAccount token, and Helm waits for the Job
//! and deletes the hooks by their policies. A watch records the hook's pods
//! while it happens (Helm deletes them afterwards).
//!
//! Module `on_node`: `scripts/test` runs these in its last step (see
//! node_job.rs).

mod common;

mod on_node {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Api, WatchEvent, WatchParams};
    use kube::{Client, ResourceExt};
    use kubesweep_fixtures::harness::{NODE_NAME, attach_node, cluster_lock, shared_client};

    use crate::common;
    use crate::common::helm::*;
    use crate::common::*;

    const RELEASE: &str = "ks-core";
    const RELEASE_NS: &str = "kubesphere-system";
    /// The hook chart's defaults: its namespace, and `<release>-kubesweep`
    /// for the ServiceAccount, ClusterRole, binding and Job.
    const HOOK_NS: &str = "kubesweep-uninstall";
    const HOOK_NAME: &str = "ks-core-kubesweep";

    /// The chart as a test installs it: tests/charts/ks-core with the hook
    /// chart copied under charts/ (what `helm dependency build` would do).
    fn assemble_chart(dir: &Path) -> std::path::PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let chart = dir.join("ks-core");
        copy_dir(&manifest.join("tests/charts/ks-core"), &chart);
        copy_dir(
            &manifest.join("../../deploy/helm/kubesweep-hook"),
            &chart.join("charts/kubesweep-hook"),
        );
        chart
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read chart dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy chart file");
            }
        }
    }

    /// The hook pods seen while a watch ran, by name, in their last state.
    type Seen = Arc<Mutex<BTreeMap<String, Pod>>>;

    /// Watches the hook's pods in every namespace until aborted.
    fn watch_hook_pods(client: &Client) -> (Seen, tokio::task::JoinHandle<()>) {
        let seen: Seen = Arc::default();
        let pods: Api<Pod> = Api::all(client.clone());
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let params = WatchParams::default()
                .labels("app.kubernetes.io/name=kubesweep-hook")
                .timeout(290);
            let mut version = "0".to_string();
            loop {
                let stream = match pods.watch(&params, &version).await {
                    Ok(stream) => stream.boxed(),
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let mut stream = stream;
                while let Ok(Some(event)) = stream.try_next().await {
                    match event {
                        WatchEvent::Added(pod)
                        | WatchEvent::Modified(pod)
                        | WatchEvent::Deleted(pod) => {
                            version = pod.resource_version().unwrap_or(version);
                            record.lock().expect("seen").insert(pod.name_any(), pod);
                        }
                        WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                        WatchEvent::Error(_) => version = "0".to_string(),
                    }
                }
            }
        });
        (seen, task)
    }

    /// Each hook pod that ran (the Job may retry), in creation order, with
    /// its container's exit code and termination message (none: it never
    /// terminated).
    fn hook_runs(seen: &Seen) -> Vec<(Pod, Option<(i32, String)>)> {
        let mut pods: Vec<Pod> = seen.lock().expect("seen").values().cloned().collect();
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        pods.into_iter()
            .map(|pod| {
                let terminated = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.terminated.clone())
                    .map(|t| (t.exit_code, t.message.unwrap_or_default()));
                (pod, terminated)
            })
            .collect()
    }

    /// The runs, for assertion messages.
    fn describe(runs: &[(Pod, Option<(i32, String)>)]) -> String {
        runs.iter()
            .map(|(pod, t)| {
                format!(
                    "pod {} on {:?}: {t:?}",
                    pod.name_any(),
                    pod.spec.as_ref().and_then(|s| s.node_name.clone())
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything an earlier run may have left: the release (uninstalled
    /// without hooks), the hook's objects, KubeSphere.
    async fn reset(client: &Client, home: &Path) {
        let _ = helm(
            &[
                "uninstall",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--no-hooks",
                "--wait",
            ],
            home,
        );
        // KubeSphere first: its dead APIService blocks every namespace
        // deletion, the hook's too.
        let out = kubesweep(&[
            "apply",
            "--yes",
            "--stop-controllers",
            "--include-shared-crds",
        ]);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "cleanup apply: {}",
            explain(&out)
        );
        delete_if_present(&Api::<Namespace>::all(client.clone()), HOOK_NS).await;
        delete_if_present(&Api::<ClusterRoleBinding>::all(client.clone()), HOOK_NAME).await;
        delete_if_present(&Api::<ClusterRole>::all(client.clone()), HOOK_NAME).await;
    }

    /// No hook ServiceAccount, ClusterRole or binding is left, and no binding
    /// of cluster-admin or of the hook's role to anyone. The hook's namespace
    /// is gone, or, when `may_linger` (KubeSphere's dead APIService is still
    /// there: the namespace controller cannot finish any deletion), being
    /// deleted with nothing left in it.
    async fn assert_no_hook_rbac(client: &Client, may_linger: bool) {
        let namespaces = Api::<Namespace>::all(client.clone());
        match namespaces
            .get_opt(HOOK_NS)
            .await
            .expect("get hook namespace")
        {
            None => {}
            Some(ns) => {
                assert!(
                    may_linger && ns.metadata.deletion_timestamp.is_some(),
                    "hook namespace left: {:?}",
                    ns.status
                );
                let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                    client.clone(),
                    HOOK_NS,
                )
                .list(&Default::default())
                .await
                .expect("list service accounts");
                assert!(
                    accounts.items.is_empty(),
                    "{:?}",
                    accounts.iter().map(|a| a.name_any()).collect::<Vec<_>>()
                );
            }
        }
        let bindings = Api::<ClusterRoleBinding>::all(client.clone())
            .list(&Default::default())
            .await
            .expect("list bindings");
        for b in bindings {
            let to_hook = b
                .subjects
                .iter()
                .flatten()
                .any(|s| s.namespace.as_deref() == Some(HOOK_NS));
            assert!(
                !to_hook && b.role_ref.name != HOOK_NAME,
                "binding {} left: {:?} -> {:?}",
                b.name_any(),
                b.subjects,
                b.role_ref
            );
        }
        assert_absent(&Api::<ClusterRole>::all(client.clone()), &[HOOK_NAME]).await;
    }

    /// Installs the chart (its namespace exists: the seed made it).
    /// `helm install` of the chart, with `list` on the cluster's foreign
    /// groups as `rbac.extraRules` (what an operator adds for the CRDs of
    /// other software: earlier tests leave some behind).
    async fn install(client: &Client, chart: &Path, home: &Path) {
        let extra = format!(
            "kubesweep-hook.rbac.extraRules={}",
            serde_json::Value::from(foreign_list_rules(client).await)
        );
        helm_ok(
            &[
                "install",
                RELEASE,
                utf8(chart),
                "-n",
                RELEASE_NS,
                "--set-json",
                &extra,
                "--wait",
                "--timeout",
                "3m",
            ],
            home,
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn helm_uninstall_runs_the_hook_in_a_real_pod_and_leaves_nothing() {
        let _lock = cluster_lock();
        attach_node(Path::new(env!("CARGO_BIN_EXE_kubesweep")));
        let client = shared_client().await;
        let home = tempfile::tempdir().expect("helm home");
        reset(&client, home.path()).await;
        let seeded = seeded(&client).await;
        let chart = assemble_chart(home.path());
        install(&client, &chart, home.path()).await;
        let before = kubesweep_fixtures::snapshot(&client, &seeded)
            .await
            .expect("snapshot before");

        let (seen, watch) = watch_hook_pods(&client);
        let uninstall = helm(
            &[
                "uninstall",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--wait",
                "--timeout",
                "5m",
            ],
            home.path(),
        );
        watch.abort();
        let runs = hook_runs(&seen);
        assert!(
            uninstall.status.success(),
            "helm uninstall: {}\nhook runs:\n{}",
            explain(&uninstall),
            describe(&runs)
        );
        // One run, and it succeeded.
        assert_eq!(runs.len(), 1, "{}", describe(&runs));
        let (pod, terminated) = &runs[0];
        assert!(matches!(terminated, Some((0, _))), "{}", describe(&runs));
        let spec = pod.spec.clone().expect("spec");
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE_NAME),
            "the hook ran on the node"
        );
        assert_eq!(spec.service_account_name.as_deref(), Some(HOOK_NAME));
        assert_eq!(pod.namespace().as_deref(), Some(HOOK_NS));

        // Helm is done with the release; kubesweep left nothing.
        assert!(
            !helm_releases(home.path())
                .iter()
                .any(|r| r == &format!("{RELEASE_NS}/{RELEASE}")),
            "{:?}",
            helm_releases(home.path())
        );
        // Hook mode guards ks-core's records from the namespace controller
        // until Helm has purged them (a ValidatingAdmissionPolicy), so
        // kubesphere-system finishes on the controller's next retry after
        // the purge: waited for here, with a bound (not a speed assertion).
        let gone = tokio::time::Instant::now();
        let namespaces = Api::<Namespace>::all(client.clone());
        while namespaces
            .get_opt(RELEASE_NS)
            .await
            .expect("get namespace")
            .is_some()
        {
            assert!(
                gone.elapsed() < std::time::Duration::from_secs(600),
                "{RELEASE_NS} still there 10 minutes after helm uninstall: {:?}",
                namespaces
                    .get_opt(RELEASE_NS)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|n| n.status)
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        eprintln!(
            "{RELEASE_NS} gone {:.1} s after helm uninstall returned",
            gone.elapsed().as_secs_f64()
        );
        let verify = kubesweep(&["verify"]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "verify: {}",
            explain(&verify)
        );
        assert_no_hook_rbac(&client, false).await;
        assert_absent(&Api::<Namespace>::all(client.clone()), &[RELEASE_NS]).await;
        // Decoys byte-identical, kept objects lost only KubeSphere's keys.
        assert_verdict_clean(&client, &seeded, &before).await;
        reset(&client, home.path()).await;
        common::reset(&client, &seeded).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_hook_role_missing_one_rule_fails_the_uninstall_and_changes_nothing() {
        let _lock = cluster_lock();
        attach_node(Path::new(env!("CARGO_BIN_EXE_kubesweep")));
        let client = shared_client().await;
        let home = tempfile::tempdir().expect("helm home");
        reset(&client, home.path()).await;
        let seeded = seeded(&client).await;
        let chart = assemble_chart(home.path());
        // One rule less: the CRDs' (the role otherwise as generated).
        let role_file = chart.join("charts/kubesweep-hook/files/clusterrole.yaml");
        let role = std::fs::read_to_string(&role_file).expect("role");
        let lines: Vec<&str> = role.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains("\"customresourcedefinitions\""))
            .expect("the CRD rule");
        assert!(
            lines[at - 1].trim_start().starts_with("- apiGroups:"),
            "{role}"
        );
        let trimmed: Vec<&str> = lines[..at - 1]
            .iter()
            .chain(&lines[at + 2..])
            .copied()
            .collect();
        std::fs::write(&role_file, trimmed.join("\n") + "\n").expect("write role");
        install(&client, &chart, home.path()).await;
        let before = kubesweep_fixtures::snapshot(&client, &seeded)
            .await
            .expect("snapshot before");

        let (seen, watch) = watch_hook_pods(&client);
        let uninstall = helm(
            &[
                "uninstall",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--wait",
                "--timeout",
                "2m",
            ],
            home.path(),
        );
        watch.abort();
        let runs = hook_runs(&seen);
        assert!(
            !uninstall.status.success(),
            "helm uninstall succeeded without the CRD rule: {}\n{}",
            explain(&uninstall),
            describe(&runs)
        );
        // Every run (the Job retries once) failed on the node, naming the
        // missing permission.
        assert!(!runs.is_empty(), "no hook pod seen");
        for (pod, terminated) in &runs {
            assert_eq!(
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
                Some(NODE_NAME)
            );
            let Some((code, message)) = terminated else {
                panic!("a run never terminated: {}", describe(&runs));
            };
            assert_ne!(*code, 0, "{message}");
            assert!(
                message.contains("customresourcedefinitions"),
                "the termination message does not name the missing permission:\n{message}"
            );
        }
        assert!(
            stderr(&uninstall).contains(HOOK_NAME) || stderr(&uninstall).contains("post-delete"),
            "helm does not report the hook's failure: {}",
            explain(&uninstall)
        );
        eprintln!("helm uninstall: {}", explain(&uninstall));
        assert_no_hook_rbac(&client, true).await;
        // kubesweep changed nothing of the footprint (Helm removed only the
        // chart's own templates, which the footprint does not hold).
        let after = kubesweep_fixtures::snapshot(&client, &seeded)
            .await
            .expect("snapshot after");
        let changes = before.diff(&after);
        assert!(changes.is_empty(), "changed:\n{}", changes.join("\n"));
        reset(&client, home.path()).await;
        common::reset(&client, &seeded).await;
    }
}
