//! kubesweep's image in a real pod (issue 12): a Job on testenv's node
//! (`testenv/cluster node-up`: kube-scheduler, containerd, a kubelet) runs the
//! image built from this build's binary, under a ServiceAccount of its own,
//! and talks to the API server from inside the pod with that account's token.
//! Everything is read back through the API: the Job's conditions, the pod's
//! node and container states, and the containers' logs (which the API server
//! fetches from the kubelet).
//!
//! The tests live in module `on_node`: `scripts/test` runs them in a step of
//! their own after the main pass (`--skip on_node::` there), so the node and
//! its extra controllers never change what the other tests see.

mod common;

mod on_node {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
    use kube::{Client, ResourceExt};
    use kubesweep_fixtures::harness::{
        NODE_NAME, attach_node, cluster_lock, shared_client, unique_name,
    };
    use serde_json::json;

    /// How long a Job may take at most before the test gives up waiting (a
    /// bound on waiting, not an assertion on speed: a pod starts in seconds).
    const JOB_WAIT: Duration = Duration::from_secs(180);

    async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(value).expect("object");
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", object.name_any()))
    }

    /// A Job of kubesweep's image on the node, host network (the API server
    /// listens on loopback), never pulled: `kubesweep --version` as an init
    /// container, then `kubesweep plan` (in-cluster configuration).
    fn kubesweep_job(name: &str, namespace: &str, service_account: &str) -> serde_json::Value {
        let container = |name: &str, args: &[&str]| {
            json!({
                "name": name,
                "image": "kubesweep:dev",
                "imagePullPolicy": "Never",
                "args": args,
                "securityContext": {
                    "runAsNonRoot": true,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            })
        };
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "serviceAccountName": service_account,
                        "hostNetwork": true,
                        "restartPolicy": "Never",
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "initContainers": [container("version", &["--version"])],
                        "containers": [container("plan", &["plan"])],
                    }
                }
            }
        })
    }

    /// Waits until the Job is Complete or Failed; returns that condition type.
    async fn finished(jobs: &Api<Job>, name: &str) -> String {
        let give_up = tokio::time::Instant::now() + JOB_WAIT;
        loop {
            let job = jobs.get(name).await.expect("get job");
            let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
            if let Some(c) = conditions
                .iter()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            {
                return c.type_.clone();
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "job {name} did not finish: conditions {conditions:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The Job's one pod.
    async fn job_pod(pods: &Api<Pod>, job: &str) -> Pod {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("list pods");
        assert_eq!(list.items.len(), 1, "pods of job {job}: {:?}", list.items);
        list.items.into_iter().next().expect("one pod")
    }

    /// Exit code and termination reason of each container (init ones too).
    fn terminations(pod: &Pod) -> BTreeMap<String, (i32, String)> {
        let status = pod.status.clone().unwrap_or_default();
        status
            .init_container_statuses
            .unwrap_or_default()
            .into_iter()
            .chain(status.container_statuses.unwrap_or_default())
            .filter_map(|s| {
                let t = s.state?.terminated?;
                Some((s.name, (t.exit_code, t.reason.unwrap_or_default())))
            })
            .collect()
    }

    async fn logs(pods: &Api<Pod>, pod: &str, container: &str) -> String {
        pods.logs(
            pod,
            &LogParams {
                container: Some(container.to_string()),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("logs of {pod}/{container}: {e}"))
    }

    /// A namespace and ServiceAccount for one Job; the namespace is deleted
    /// again at the end of the test.
    async fn account(client: &Client, prefix: &str) -> String {
        let namespace = unique_name(prefix);
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .await;
        create(
            &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}}),
        )
        .await;
        namespace
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_job_runs_kubesweeps_image_in_a_real_pod_with_its_service_account() {
        let _lock = cluster_lock();
        attach_node(Path::new(env!("CARGO_BIN_EXE_kubesweep")));
        let client = shared_client().await;
        let kube_system_uid = Api::<Namespace>::all(client.clone())
            .get("kube-system")
            .await
            .expect("kube-system")
            .uid()
            .expect("uid");

        // A reader: the account may read everything and change nothing.
        let namespace = account(&client, "node-job").await;
        let reader = unique_name("node-job-reader");
        create(
            &Api::<ClusterRole>::all(client.clone()),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": reader},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}],
            }),
        )
        .await;
        create(
            &Api::<ClusterRoleBinding>::all(client.clone()),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": reader},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
                "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": namespace}],
            }),
        )
        .await;
        // The same Job under an account bound to nothing: the API server
        // refuses it by that account's name, so the token in the pod is the
        // account's (not some credential of the node's).
        let unbound = account(&client, "node-job-unbound").await;

        let jobs = Api::<Job>::namespaced(client.clone(), &namespace);
        let unbound_jobs = Api::<Job>::namespaced(client.clone(), &unbound);
        create(&jobs, kubesweep_job("kubesweep", &namespace, "runner")).await;
        create(
            &unbound_jobs,
            kubesweep_job("kubesweep", &unbound, "runner"),
        )
        .await;

        // The bound one completes: both containers exited 0 on the node.
        let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
        let outcome = finished(&jobs, "kubesweep").await;
        let pod = job_pod(&pods, "kubesweep").await;
        let pod_name = pod.name_any();
        let version = logs(&pods, &pod_name, "version").await;
        let plan = logs(&pods, &pod_name, "plan").await;
        assert_eq!(
            outcome, "Complete",
            "pod {pod_name}: {:?}\nversion: {version}\nplan: {plan}",
            pod.status
        );
        let spec = pod.spec.clone().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME));
        assert_eq!(spec.service_account_name.as_deref(), Some("runner"));
        let done = terminations(&pod);
        assert_eq!(
            done.get("version"),
            Some(&(0, "Completed".to_string())),
            "{done:?}"
        );
        assert_eq!(
            done.get("plan"),
            Some(&(0, "Completed".to_string())),
            "{done:?}"
        );
        assert_eq!(
            version.trim(),
            format!("kubesweep {}", env!("CARGO_PKG_VERSION")),
            "version container's log"
        );
        // The plan was made from inside the pod, of this cluster.
        assert!(
            plan.contains(&format!("(kube-system {kube_system_uid})")),
            "plan container's log does not name this cluster's kube-system:\n{plan}"
        );

        // The unbound one fails in `plan`, refused as its own account.
        let unbound_pods = Api::<Pod>::namespaced(client.clone(), &unbound);
        assert_eq!(finished(&unbound_jobs, "kubesweep").await, "Failed");
        let pod = job_pod(&unbound_pods, "kubesweep").await;
        let refused = logs(&unbound_pods, &pod.name_any(), "plan").await;
        let done = terminations(&pod);
        assert_eq!(
            done.get("version"),
            Some(&(0, "Completed".to_string())),
            "{done:?}"
        );
        assert!(
            matches!(done.get("plan"), Some((code, _)) if *code != 0),
            "{done:?}"
        );
        let user = format!("system:serviceaccount:{unbound}:runner");
        assert!(
            refused.contains(&user) && refused.contains("forbidden"),
            "the refusal does not name {user}:\n{refused}"
        );

        for name in [&namespace, &unbound] {
            Api::<Namespace>::all(client.clone())
                .delete(name, &DeleteParams::foreground())
                .await
                .expect("delete namespace");
        }
        Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&reader, &DeleteParams::default())
            .await
            .expect("delete binding");
        Api::<ClusterRole>::all(client.clone())
            .delete(&reader, &DeleteParams::default())
            .await
            .expect("delete role");
    }
}
