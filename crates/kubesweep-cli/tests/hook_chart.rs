//! The Helm post-delete hook chart (`deploy/helm/kubesweep-hook`) and its
//! least-privilege ClusterRole, on the real control plane with the real helm:
//! the chart lints and renders as hooks that never outlive the hook, its role
//! equals `kubesweep profiles rbac kubesphere` byte for byte, the role is
//! sufficient (a run with only its token removes the full KubeSphere fixture
//! and verifies clean) and minimal (without any one verb of any rule, the run
//! stops at preflight, exit 4, naming the permission, nothing changed).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::helm::{helm, helm_ok};
use common::{
    assert_applied_clean, assert_verdict_clean, explain, kubesweep, kubesweep_as, reset, seeded,
    stderr,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, kubeconfig_path, shared_client, unique_name};
use serde_json::{Value, json};

/// The chart, from this crate's directory.
fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/kubesweep-hook")
}

/// Every YAML document of a multi-document stream, comments-only ones left out.
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if !current.trim().is_empty() {
                let doc: Value = serde_saphyr::from_str(&current)
                    .unwrap_or_else(|e| panic!("invalid YAML document: {e}\n{current}"));
                if !doc.is_null() {
                    docs.push(doc);
                }
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

/// `helm template` of the chart with extra `--set` arguments, as documents.
fn render(set: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("helm home");
    let chart = chart_dir();
    let mut args = vec!["template", "rel", chart.to_str().expect("utf-8 path")];
    for s in set {
        args.extend(["--set-json", s]);
    }
    documents(&helm_ok(&args, home.path()))
}

fn annotation<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc["metadata"]["annotations"][key].as_str().unwrap_or("")
}

#[test]
fn the_chart_keeps_the_generated_role_byte_for_byte() {
    let out = kubesweep(&["profiles", "rbac", "kubesphere"]);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let kept = std::fs::read(chart_dir().join("files/clusterrole.yaml")).expect("chart copy");
    assert!(
        out.stdout == kept,
        "deploy/helm/kubesweep-hook/files/clusterrole.yaml differs from `kubesweep profiles rbac kubesphere`; regenerate it"
    );
    let unknown = kubesweep(&["profiles", "rbac", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", explain(&unknown));
    assert_eq!(stderr(&unknown).lines().count(), 1, "{}", explain(&unknown));
    assert!(stderr(&unknown).contains("nope"), "{}", explain(&unknown));
}

#[test]
fn the_chart_lints_and_renders_hooks_that_never_outlive_the_hook() {
    let home = tempfile::tempdir().expect("helm home");
    let chart = chart_dir();
    let lint = helm(
        &["lint", "--strict", chart.to_str().expect("utf-8")],
        home.path(),
    );
    assert!(lint.status.success(), "{}", explain(&lint));

    let docs = render(&[]);
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        {
            let mut k = kinds.clone();
            k.sort_unstable();
            k
        },
        vec![
            "ClusterRole",
            "ClusterRoleBinding",
            "Job",
            "Namespace",
            "ServiceAccount"
        ],
        "the chart renders exactly the hook's objects"
    );
    let mut weight: BTreeMap<&str, i64> = BTreeMap::new();
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        assert_eq!(annotation(doc, "helm.sh/hook"), "post-delete", "{kind}");
        let policies: Vec<&str> = annotation(doc, "helm.sh/hook-delete-policy")
            .split(',')
            .collect();
        for policy in ["before-hook-creation", "hook-succeeded", "hook-failed"] {
            assert!(policies.contains(&policy), "{kind} lacks {policy}");
        }
        weight.insert(
            kind,
            annotation(doc, "helm.sh/hook-weight")
                .parse()
                .unwrap_or_else(|_| panic!("{kind} has no numeric weight")),
        );
    }
    for rbac in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        assert!(weight[rbac] < weight["Job"], "{rbac} before the Job");
    }
    assert!(weight["Namespace"] < weight["ServiceAccount"]);
    // The cluster-scoped RBAC comes before the namespace: when the Job
    // fails, Helm deletes the hooks before it in creation order, waiting for
    // each, and a namespace whose deletion hangs (KubeSphere's dead
    // APIService stops the namespace controller) would otherwise keep the
    // binding (seen on testenv's node: tests/node_helm_hook.rs).
    assert!(weight["ClusterRole"] < weight["ClusterRoleBinding"]);
    assert!(weight["ClusterRoleBinding"] < weight["Namespace"]);

    // Everything namespaced lives in the hook's own namespace.
    let namespace = docs
        .iter()
        .find(|d| d["kind"] == "Namespace")
        .and_then(|d| d["metadata"]["name"].as_str())
        .expect("namespace name")
        .to_owned();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ServiceAccount" || d["kind"] == "Job")
    {
        assert_eq!(doc["metadata"]["namespace"], namespace.as_str());
    }
    let profile = kubesweep::profile::Profile::builtin("kubesphere").expect("profile");
    assert!(
        !profile.namespaces.delete.contains(&namespace),
        "the hook's namespace is one the profile deletes"
    );

    // The role is the generated one, then hook mode's rules (the default
    // Job runs `apply --hook`; no backup recipient, so no backup store).
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("role");
    let generated: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart_dir().join("files/clusterrole.yaml")).expect("rules"),
    )
    .expect("generated role");
    let generated_rules = generated["rules"].as_array().expect("generated rules");
    let rules = role["rules"].as_array().expect("rules");
    assert_eq!(&rules[..generated_rules.len()], &generated_rules[..]);
    assert_eq!(
        &rules[generated_rules.len()..],
        &[
            json!({"apiGroups": ["admissionregistration.k8s.io"],
                   "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
                   "verbs": ["create", "get"]}),
            json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["deletecollection"]}),
        ]
    );

    let job = docs.iter().find(|d| d["kind"] == "Job").expect("job");
    let spec = &job["spec"];
    let deadline = spec["activeDeadlineSeconds"].as_i64().expect("deadline");
    assert!(deadline > 0 && deadline < 300, "below Helm's 5 minutes");
    let backoff = spec["backoffLimit"].as_i64().expect("backoffLimit");
    assert!((0..=3).contains(&backoff), "bounded backoffLimit");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["hostNetwork"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sa = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .expect("sa");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        container["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    let tmp = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/tmp"))
        .expect("/tmp is mounted");
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == tmp["name"]))
        .expect("/tmp volume");
    assert!(volume["emptyDir"].is_object(), "/tmp is an emptyDir");
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..2], ["apply", "--hook"]);
    assert!(
        args.windows(2)
            .any(|w| w == ["--backup-dir", "/tmp/kubesweep-backups"])
    );
    // The binary accepts them: outside a pod (no in-cluster service account)
    // it stops at the connection (exit 3), not at the command line (exit 2).
    let dir = tempfile::tempdir().expect("tempdir");
    let parsed = kubesweep_as(&args, &dir.path().join("no-such-kubeconfig"));
    assert_eq!(parsed.status.code(), Some(3), "{}", explain(&parsed));

    // Values reach the objects.
    let docs = render(&[
        r#"image={"repository":"registry.example/kubesweep","tag":"9.9.9","pullPolicy":"Always"}"#,
        "hostNetwork=true",
        r#"backup={"dir":"/tmp/b","recipient":"age1example"}"#,
        r#"rbac={"extraRules":[{"apiGroups":["acme.example.com"],"resources":["*"],"verbs":["list"]}]}"#,
    ]);
    let job = docs.iter().find(|d| d["kind"] == "Job").expect("job");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/kubesweep:9.9.9");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(job["spec"]["template"]["spec"]["hostNetwork"], true);
    let args = container["args"].to_string();
    assert!(args.contains(r#""--encrypt-to","age1example""#), "{args}");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("role");
    let rules = role["rules"].as_array().expect("rules");
    assert_eq!(
        rules.last(),
        Some(&json!({"apiGroups":["acme.example.com"],"resources":["*"],"verbs":["list"]}))
    );
    // Generated rules, then hook mode's two (the Job runs `apply --hook`),
    // then the backup store's one (a recipient is set), then the extra one.
    let generated_len = generated["rules"].as_array().map_or(0, Vec::len);
    assert_eq!(rules.len(), generated_len + 2 + 1 + 1);
    assert_eq!(
        rules[generated_len],
        json!({"apiGroups": ["admissionregistration.k8s.io"],
               "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
               "verbs": ["create", "get"]})
    );
    assert_eq!(
        rules[generated_len + 2],
        json!({"apiGroups": [""], "resources": ["namespaces", "secrets"], "verbs": ["create"]})
    );
    // Without `--hook` (a chart that runs plain `apply`) the role is the
    // generated one and nothing of hook mode.
    let docs = render(&[r#"args=["apply","--yes"]"#]);
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("role");
    assert_eq!(role["rules"], generated["rules"]);
}

/// A ServiceAccount in a namespace of its own, bound to a ClusterRole, and a
/// kubeconfig holding only a token minted for it (TokenRequest).
struct Account {
    namespace: String,
    name: String,
    kubeconfig: PathBuf,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Account {
    async fn create(admin: &Client, rules: &Value) -> Account {
        let name = unique_name("ksw-hook");
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
            )
            .await
            .expect("namespace");
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &name);
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "hook"}})).expect("sa"),
            )
            .await
            .expect("service account");
        Api::<ClusterRole>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules}))
                    .expect("role"),
            )
            .await
            .expect("cluster role");
        Api::<ClusterRoleBinding>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [{"kind": "ServiceAccount", "name": "hook", "namespace": name}]
                }))
                .expect("binding"),
            )
            .await
            .expect("binding");
        let token = accounts
            .create_token_request("hook", &PostParams::default(), &Default::default())
            .await
            .expect("token request")
            .status
            .expect("token status")
            .token;
        let admin_config: Value = serde_json::to_value(
            kube::config::Kubeconfig::read_from(kubeconfig_path()).expect("admin kubeconfig"),
        )
        .expect("kubeconfig as JSON");
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": admin_config["clusters"][0]["cluster"]}],
            "users": [{"name": "hook", "user": {"token": token}}],
            "contexts": [{"name": "hook", "context": {"cluster": "test", "user": "hook"}}],
            "current-context": "hook"
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("hook.kubeconfig");
        std::fs::write(&kubeconfig, config.to_string()).expect("write kubeconfig");
        let kube_config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("read"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("token config");
        let client = Client::try_from(kube_config).expect("token client");
        Account {
            namespace: name.clone(),
            name,
            kubeconfig,
            client,
            _dir: dir,
        }
    }

    async fn set_rules(&self, admin: &Client, rules: &Value) {
        Api::<ClusterRole>::all(admin.clone())
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"rules": rules})),
            )
            .await
            .expect("update the role");
    }

    /// Whether the token may `verb` `group`/`resource` (a subresource after `/`).
    async fn may(&self, verb: &str, group: &str, resource: &str) -> bool {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<SelfSubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .expect("access review")
            .status
            .is_some_and(|s| s.allowed)
    }

    /// Waits until the authorizer answers `allowed` for the permission (RBAC
    /// changes reach it through an informer, not at once).
    async fn await_authorizer(&self, verb: &str, group: &str, resource: &str, allowed: bool) {
        for _ in 0..300 {
            if self.may(verb, group, resource).await == allowed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the authorizer never saw {verb} {group}/{resource} allowed={allowed}");
    }

    async fn delete(mut self, admin: &Client) {
        remove_account(admin, &self.name, &self.namespace).await;
        self.name.clear();
    }
}

/// Deletes an account's binding, role and namespace (absent ones are fine).
async fn remove_account(admin: &Client, name: &str, namespace: &str) {
    let dp = DeleteParams::default();
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(name, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(name, &dp)
        .await;
    let _ = Api::<Namespace>::all(admin.clone())
        .delete(namespace, &dp)
        .await;
}

impl Drop for Account {
    /// A test that panics still removes the binding it made (a privileged
    /// binding must not outlive the test), on a runtime of its own.
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let (name, namespace) = (self.name.clone(), self.namespace.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = shared_client().await;
                remove_account(&admin, &name, &namespace).await;
            });
        })
        .join();
    }
}

/// The fixture's foreign CRD groups (decoys of other software): discovery
/// lists every type, and the generated role cannot know these. An operator
/// adds such rules with the chart's `rbac.extraRules`; so does this test.
const FIXTURE_FOREIGN_GROUPS: [&str; 3] = [
    "acme.example.com",
    "kubesphere.io.example.com",
    "notkubesphere.io",
];

/// Why a namespaced Kubernetes type keeps `delete` though the fixture's
/// plan deletes no object of it (its kept objects exercise `get` and `patch`).
const RELEASE_OBJECT: &str = "an object of this type in a platform Helm release is deleted; \
    the fixture's releases hold none";

/// Why a namespaced Kubernetes type keeps `get`, `patch` and `delete` though
/// the fixture holds no platform object of it.
const ANY_NAMESPACED: &str = "a kept object of this type carrying platform metadata is read and patched, \
    an object of this type in a platform Helm release is deleted; the fixture has neither";

/// Verbs of generated rules the seeded fixture does not exercise, and why
/// each stays: kubesweep needs them on other clusters. Keyed by the rule's
/// first group and first resource. The test fails when this list is wrong in
/// either direction, so it cannot grow silently.
const NOT_EXERCISED_BY_THE_FIXTURE: &[(&str, &str, &[&str], &str)] = &[
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["patch"],
        "disabling the conversion webhook of a platform CRD; the fixture's CRDs convert nothing",
    ),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        &["delete"],
        RELEASE_OBJECT,
    ),
    ("batch", "cronjobs", &["delete"], RELEASE_OBJECT),
    (
        "certificates.k8s.io",
        "podcertificaterequests",
        &["delete", "get", "patch"],
        ANY_NAMESPACED,
    ),
    (
        "networking.k8s.io",
        "ingresses",
        &["delete"],
        RELEASE_OBJECT,
    ),
    (
        "policy",
        "poddisruptionbudgets",
        &["delete"],
        RELEASE_OBJECT,
    ),
    (
        "resource.k8s.io",
        "resourceclaims",
        &["delete", "get", "patch"],
        ANY_NAMESPACED,
    ),
    (
        "storage.k8s.io",
        "csistoragecapacities",
        &["delete"],
        RELEASE_OBJECT,
    ),
    (
        "app.k8s.io",
        "applications",
        &["delete", "get", "patch"],
        "an Application proven the platform's is removed; the fixture's only Application is the user's",
    ),
    (
        "kubefed.io",
        "*",
        &["delete", "get", "list", "patch"],
        "a shared group of KubeSphere 3.x; not served on the 4.x fixture",
    ),
    (
        "monitoring.coreos.com",
        "*",
        &["delete", "get", "list", "patch"],
        "a shared group of KubeSphere 3.x; not served on the 4.x fixture",
    ),
    (
        "snapshot.storage.k8s.io",
        "*",
        &["delete", "get", "list", "patch"],
        "a shared group of KubeSphere 3.x; not served on the 4.x fixture",
    ),
];

/// How many reduced roles are probed at once (one ServiceAccount each).
const PROBE_CONCURRENCY: usize = 2;

/// What a run with `rules` minus `verb` of rule `index` does: `None` when
/// preflight stopped it (exit 4) naming the permission, `Some(exit)` when it
/// got past preflight (and refused at the confirmation, changing nothing).
async fn probe(
    admin: &Client,
    account: &Account,
    rules: &[Value],
    index: usize,
    verb: &str,
) -> Option<i32> {
    let rule = &rules[index];
    let verbs: Vec<&str> = rule["verbs"]
        .as_array()
        .expect("verbs")
        .iter()
        .filter_map(Value::as_str)
        .filter(|v| *v != verb)
        .collect();
    let mut reduced = rules.to_vec();
    if verbs.is_empty() {
        reduced.remove(index);
    } else {
        reduced[index]["verbs"] = json!(verbs);
    }
    account.set_rules(admin, &json!(reduced)).await;
    let group = rule["apiGroups"][0].as_str().expect("group");
    let resource = match rule["resources"][0].as_str().expect("resource") {
        "*" => "anything",
        r => r,
    };
    account.await_authorizer(verb, group, resource, false).await;
    let kubeconfig = account.kubeconfig.clone();
    // `apply` without --yes and without a terminal never changes anything:
    // past preflight it refuses at the confirmation (exit 7).
    let out = tokio::task::spawn_blocking(move || kubesweep_as(&["apply"], &kubeconfig))
        .await
        .expect("run kubesweep");
    let err = stderr(&out);
    match out.status.code() {
        Some(4) => {
            let named = rule["resources"]
                .as_array()
                .into_iter()
                .chain(rule["apiGroups"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .filter(|n| *n != "*" && !n.is_empty())
                .any(|n| err.contains(n));
            assert!(
                err.contains(verb) && named && err.contains("nothing was changed")
                    || err.contains(&format!("cannot {verb} resource")),
                "without {verb} of rule {rule}, the refusal does not name it:\n{}",
                explain(&out)
            );
            None
        }
        Some(7) => Some(7),
        _ => panic!("without {verb} of rule {rule}: {}", explain(&out)),
    }
}

/// Objects of several Kubernetes types, in a namespace the plan keeps, each
/// carrying a platform annotation (`kubesphere.io/creator`, which the profile
/// strips from every kept object): the plan reads and patches each, so the
/// `get` and `patch` verbs of their rules are exercised. The RoleBinding
/// refers to a Role granting only what the hook's role holds, so stripping
/// its annotation needs no `bind`. Returns (apiVersion, plural, kind) of each.
async fn seed_kept_objects(admin: &Client, namespace: &str) -> Vec<(String, String, String)> {
    let annotations = json!({"kubesphere.io/creator": "admin"});
    let pod = json!({"containers": [{"name": "c", "image": "example.invalid/none"}], "restartPolicy": "Never"});
    let objects = [
        (
            "batch/v1",
            "CronJob",
            "cronjobs",
            json!({"spec": {"schedule": "0 0 1 1 *", "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": pod}}}}}),
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            "ingresses",
            json!({"spec": {"defaultBackend":
            {"service": {"name": "none", "port": {"number": 80}}}}}),
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            json!({"spec": {"maxUnavailable": 1,
            "selector": {"matchLabels": {"app": "none"}}}}),
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            json!({"spec": {"maxReplicas": 1,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "none"}}}),
        ),
        (
            "storage.k8s.io/v1",
            "CSIStorageCapacity",
            "csistoragecapacities",
            json!({"storageClassName": "none"}),
        ),
        (
            "apps/v1",
            "ControllerRevision",
            "controllerrevisions",
            json!({"revision": 1, "data": {}}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            "roles",
            json!({"rules": [{"apiGroups": [""],
            "resources": ["configmaps"], "verbs": ["get"]}]}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
            json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": KEPT_NAME},
            "subjects": [{"kind": "User", "name": "nobody-real"}]}),
        ),
    ];
    let mut out = Vec::new();
    for (api_version, kind, plural, mut body) in objects {
        body["apiVersion"] = json!(api_version);
        body["kind"] = json!(kind);
        body["metadata"] =
            json!({"name": KEPT_NAME, "namespace": namespace, "annotations": annotations});
        let object: kube::api::DynamicObject = serde_json::from_value(body).expect("object");
        let api = dynamic(admin, namespace, api_version, kind, plural);
        // A leftover of an interrupted run is replaced.
        let _ = api.delete(KEPT_NAME, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
        out.push((api_version.to_owned(), plural.to_owned(), kind.to_owned()));
    }
    out
}

/// Name of the kept objects [`seed_kept_objects`] makes.
const KEPT_NAME: &str = "kept-by-hook-test";

fn dynamic(
    admin: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> Api<kube::api::DynamicObject> {
    let (group, version) = api_version.split_once('/').expect("group/version");
    let resource = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(admin.clone(), namespace, &resource)
}

#[tokio::test]
async fn the_generated_role_is_sufficient_and_every_verb_of_every_rule_is_needed() {
    let _lock = cluster_lock();
    let admin = shared_client().await;
    let footprint = seeded(&admin).await;
    let kept_namespace = footprint
        .user_namespaces()
        .first()
        .map(|n| n.to_string())
        .expect("a user namespace");
    let kept = seed_kept_objects(&admin, &kept_namespace).await;

    // `list` on the cluster's foreign groups: the fixture's decoys and
    // whatever earlier tests left (a foreign CRD a Helm chart shipped).
    let extra: Vec<Value> = common::foreign_list_rules(&admin).await;
    for group in FIXTURE_FOREIGN_GROUPS {
        assert!(
            extra.iter().any(|r| r["apiGroups"][0] == group),
            "the fixture's foreign group {group} is served"
        );
    }
    let set = format!("rbac={}", json!({"extraRules": extra}));
    // The role of a chart running plain `apply` (what this test runs): hook
    // mode's own rules are proven needed by hook_mode.rs, whose run without
    // them stops at preflight naming them.
    let docs = render(&[&set, r#"args=["apply","--yes"]"#]);
    let rendered = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("rendered role")["rules"]
        .clone();
    let rules = rendered.as_array().expect("rules").clone();
    let mut accounts = Vec::new();
    for _ in 0..PROBE_CONCURRENCY {
        accounts.push(Account::create(&admin, &rendered).await);
    }
    let state = kubesweep_fixtures::footprint_state(&admin, &footprint)
        .await
        .expect("footprint state");

    // Minimal: without any one verb of any rule, the run stops at preflight.
    let probes: Vec<(usize, String)> = rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| {
            rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(|v| v.as_str().map(|v| (i, v.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect();
    let started = std::time::Instant::now();
    let results = futures::future::join_all(accounts.iter().enumerate().map(|(n, account)| {
        let mine: Vec<&(usize, String)> =
            probes.iter().skip(n).step_by(PROBE_CONCURRENCY).collect();
        let (admin, rules) = (&admin, &rules);
        async move {
            let mut passed = Vec::new();
            for (index, verb) in mine {
                if probe(admin, account, rules, *index, verb).await.is_some() {
                    passed.push((*index, verb.clone()));
                }
            }
            passed
        }
    }))
    .await;
    eprintln!(
        "{} reduced roles probed in {:.1}s",
        probes.len(),
        started.elapsed().as_secs_f64()
    );
    let mut not_caught: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (index, verb) in results.into_iter().flatten() {
        let rule = &rules[index];
        let key = (
            rule["apiGroups"][0].as_str().unwrap_or("").to_owned(),
            rule["resources"][0].as_str().unwrap_or("").to_owned(),
        );
        not_caught.entry(key).or_default().push(verb);
    }
    for verbs in not_caught.values_mut() {
        verbs.sort();
    }
    let expected: BTreeMap<(String, String), Vec<String>> = NOT_EXERCISED_BY_THE_FIXTURE
        .iter()
        .map(|(g, r, verbs, _)| {
            (
                (g.to_string(), r.to_string()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        not_caught, expected,
        "rules (first group, first resource) and verbs whose removal preflight did not notice"
    );
    assert_eq!(
        state,
        kubesweep_fixtures::footprint_state(&admin, &footprint)
            .await
            .expect("footprint state"),
        "a refused run changed the footprint"
    );

    // Sufficient: the whole role removes the fixture and verifies clean.
    let account = accounts.remove(0);
    account.set_rules(&admin, &rendered).await;
    account
        .await_authorizer(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            true,
        )
        .await;
    let before = kubesweep_fixtures::snapshot(&admin, &footprint)
        .await
        .expect("snapshot before");
    let apply = kubesweep_as(&["apply", "--yes"], &account.kubeconfig);
    assert_applied_clean(&apply);
    assert_verdict_clean(&admin, &footprint, &before).await;
    let verify = kubesweep_as(&["verify"], &account.kubeconfig);
    assert_eq!(verify.status.code(), Some(0), "{}", explain(&verify));
    for (api_version, plural, kind) in &kept {
        let object = dynamic(&admin, &kept_namespace, api_version, kind, plural)
            .get(KEPT_NAME)
            .await
            .unwrap_or_else(|e| panic!("the kept {kind} is gone: {e}"));
        assert!(
            !object.annotations().contains_key("kubesphere.io/creator"),
            "the kept {kind} still carries the platform annotation"
        );
    }

    account.delete(&admin).await;
    for other in accounts {
        other.delete(&admin).await;
    }
    reset(&admin, &footprint).await;
}

/// Deleting RBAC objects needs `delete` only, removing their finalizers
/// `patch` only: the API server checks `escalate` (roles) and `bind`
/// (bindings) on every write except when only the fields the garbage
/// collector uses change (finalizers, owner references). A label is not
/// such a field: stripping one from a role granting more than the caller
/// holds is refused.
#[tokio::test]
async fn removing_a_finalizer_from_rbac_objects_needs_no_escalate_or_bind() {
    let _lock = cluster_lock();
    let admin = shared_client().await;
    let name = unique_name("ksw-powerful");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let metadata = json!({"name": name, "finalizers": ["kubesphere.io/test"], "labels": {"iam.kubesphere.io/role-template": "true"}});
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": metadata,
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]}))
            .expect("role"),
        )
        .await
        .expect("a role granting more than the caller has");
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": metadata,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "User", "name": "nobody-real"}]}))
            .expect("binding"),
        )
        .await
        .expect("a binding to cluster-admin");
    let account = Account::create(
        &admin,
        &json!([{"apiGroups": ["rbac.authorization.k8s.io"],
                 "resources": ["clusterroles", "clusterrolebindings"],
                 "verbs": ["get", "patch", "delete"]}]),
    )
    .await;
    account
        .await_authorizer("patch", "rbac.authorization.k8s.io", "clusterroles", true)
        .await;
    let as_hook_roles: Api<ClusterRole> = Api::all(account.client.clone());
    let as_hook_bindings: Api<ClusterRoleBinding> = Api::all(account.client.clone());
    let params = PatchParams::default();
    let label =
        Patch::Merge(json!({"metadata": {"labels": {"iam.kubesphere.io/role-template": null}}}));
    let finalizer = Patch::Merge(json!({"metadata": {"finalizers": null}}));

    let role_label = as_hook_roles.patch(&name, &params, &label).await;
    let binding_label = as_hook_bindings.patch(&name, &params, &label).await;
    fn status<T>(r: &Result<T, kube::Error>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(kube::Error::Api(s)) => s.code,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        (status(&role_label), status(&binding_label)),
        (403, 403),
        "a label change on a ClusterRole is checked for escalation, on a binding for bind"
    );
    let role = as_hook_roles
        .patch(&name, &params, &finalizer)
        .await
        .expect("the finalizer goes without escalate");
    let binding = as_hook_bindings
        .patch(&name, &params, &finalizer)
        .await
        .expect("the finalizer goes without bind");
    assert!(role.finalizers().is_empty() && binding.finalizers().is_empty());
    as_hook_bindings
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete needs only delete");
    as_hook_roles
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete needs only delete");
    account.delete(&admin).await;
}
