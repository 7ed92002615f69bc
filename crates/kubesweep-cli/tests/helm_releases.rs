//! KubeSphere 4.x installed the way it really is, with the real `helm`
//! (built by testenv/build-helm): a `ks-core` release (controllers, a
//! webhook, RBAC, the InstallPlan CRD in `crds/`), an extension release and
//! its `-agent` companion named by an InstallPlan (Deployment, Service,
//! ConfigMap, RBAC, a CRD in a KubeSphere group and one in a foreign group in
//! `crds/`), and a foreign release that must stay. Charts are generated here.
//!
//! (a) `helm uninstall ks-core`, then kubesweep cleans what survives;
//! (b) kubesweep alone does the whole uninstall with ks-core installed.
//! Both end with no KubeSphere release in `helm list -A`, a clean `verify`,
//! and the foreign release, its objects and the foreign CRD untouched.

mod common;

use common::helm::*;
use common::*;

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use kubesweep_fixtures::harness::{cluster_lock, shared_client};
use serde_json::json;

const DECOY_NS: &str = "helm-decoy";
const EXT: &str = "demo";
const EXT_NS: &str = "extension-demo";
const FOREIGN_CRD: &str = "gadgets.example.com";

fn deployment(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: main, image: example.invalid/{name}:1}}]
"
    )
}

/// The charts: ks-core, the extension (also installed as `<ext>-agent`), a foreign one.
fn charts(dir: &Path) {
    let chart = chart_yaml;
    write(
        &dir.join("ks-core"),
        &[
            ("Chart.yaml", chart("ks-core")),
            (
                "crds/installplans.yaml",
                crd_yaml("kubesphere.io", "InstallPlan", "installplans", "Cluster"),
            ),
            (
                "crds/jsbundles.yaml",
                crd_yaml("extensions.kubesphere.io", "JSBundle", "jsbundles", "Cluster"),
            ),
            ("templates/apiserver.yaml", deployment("ks-apiserver", "app: ks-apiserver")),
            (
                "templates/controller.yaml",
                deployment("ks-controller-manager", "app: ks-controller-manager"),
            ),
            (
                "templates/service.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: ks-controller-manager}\nspec:\n  selector: {app: ks-controller-manager}\n  ports: [{port: 443}]\n".into(),
            ),
            (
                "templates/config.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kubesphere-config}\ndata: {a: b}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: kubesphere}\n".into(),
            ),
            (
                "templates/rbac.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: kubesphere}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: kubesphere, namespace: kubesphere-system}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: ks-core-extra-reader}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [get]}]\n".into(),
            ),
            (
                "templates/webhook.yaml",
                "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: validator.installplan.kubesphere.io}
webhooks:
- name: validator.installplan.kubesphere.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig:
    service: {name: ks-controller-manager, namespace: kubesphere-system, path: /validate}
  rules:
  - {apiGroups: [kubesphere.io], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [installplans]}
".into(),
            ),
        ],
    );
    let ext_label = format!("kubesphere.io/extension-ref: {EXT}");
    write(
        &dir.join("ext"),
        &[
            ("Chart.yaml", chart("demo-ext")),
            ("values.yaml", "ui: true\n".into()),
            (
                // A KubeSphere kind the extension renders (its console UI).
                "templates/ui.yaml",
                format!(
                    "{{{{- if .Values.ui }}}}
apiVersion: extensions.kubesphere.io/v1alpha1
kind: JSBundle
metadata: {{name: '{{{{ .Release.Name }}}}-ui', labels: {{{ext_label}}}}}
spec: {{rawFrom: {{url: /dist/demo/index.js}}}}
{{{{- end }}}}
"
                ),
            ),
            (
                "crds/widgets.yaml",
                crd_yaml("demo.kubesphere.io", "Widget", "widgets", "Namespaced"),
            ),
            ("crds/gadgets.yaml", crd_yaml("example.com", "Gadget", "gadgets", "Namespaced")),
            (
                "templates/deployment.yaml",
                deployment("{{ .Release.Name }}", &format!("{ext_label}, app: demo")),
            ),
            (
                "templates/objects.yaml",
                format!(
                    "apiVersion: v1
kind: Service
metadata: {{name: '{{{{ .Release.Name }}}}', labels: {{{ext_label}}}}}
spec:
  selector: {{app: '{{{{ .Release.Name }}}}'}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: '{{{{ .Release.Name }}}}-config', labels: {{{ext_label}}}}}
data: {{a: b}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: '{{{{ .Release.Name }}}}-reader', labels: {{{ext_label}}}}}
rules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: '{{{{ .Release.Name }}}}-reader', labels: {{{ext_label}}}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: '{{{{ .Release.Name }}}}-reader'}}
subjects: [{{kind: ServiceAccount, name: default, namespace: '{{{{ .Release.Namespace }}}}'}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: '{{{{ .Release.Name }}}}-role', labels: {{{ext_label}}}}}
rules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]
"
                ),
            ),
        ],
    );
    write(
        &dir.join("decoy"),
        &[
            ("Chart.yaml", chart("decoy")),
            (
                "templates/objects.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: decoy-config}\ndata: {a: b}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: helm-decoy-reader}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [get]}]\n".into(),
            ),
        ],
    );
}

/// A clean start: no KubeSphere or decoy release, no foreign CRD.
async fn reset(client: &Client, home: &Path) {
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
    let _ = helm(&["uninstall", "decoy", "-n", DECOY_NS, "--wait"], home);
    delete_if_present(&Api::<Namespace>::all(client.clone()), DECOY_NS).await;
    delete_if_present(
        &Api::<CustomResourceDefinition>::all(client.clone()),
        FOREIGN_CRD,
    )
    .await;
    delete_if_present(
        &Api::<ClusterRole>::all(client.clone()),
        "helm-decoy-reader",
    )
    .await;
}

/// Installs everything; returns the UIDs of the decoy objects.
async fn install(client: &Client, dir: &Path, home: &Path) -> (String, String) {
    let chart = |name: &str| dir.join(name).to_string_lossy().into_owned();
    helm_ok(
        &[
            "install",
            "ks-core",
            &chart("ks-core"),
            "-n",
            "kubesphere-system",
            "--create-namespace",
        ],
        home,
    );
    for release in [EXT.to_owned(), format!("{EXT}-agent")] {
        helm_ok(
            &[
                "install",
                &release,
                &chart("ext"),
                "-n",
                EXT_NS,
                "--create-namespace",
            ],
            home,
        );
    }
    helm_ok(
        &[
            "install",
            "decoy",
            &chart("decoy"),
            "-n",
            DECOY_NS,
            "--create-namespace",
        ],
        home,
    );
    // The InstallPlan that names the extension release (and a member cluster's).
    let gvk = GroupVersionKind::gvk("kubesphere.io", "v1alpha1", "InstallPlan");
    let plans: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "installplans"),
    );
    let plan: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubesphere.io/v1alpha1", "kind": "InstallPlan",
        "metadata": {"name": EXT, "finalizers": ["kubesphere.io/installplan-protection"]},
        "spec": {"extension": {"name": EXT, "version": "1.0.0"}},
        "status": {"state": "Installed", "releaseName": EXT, "targetNamespace": EXT_NS,
                   "clusterSchedulingStatuses": {"member1": {"releaseName": format!("{EXT}-agent"), "targetNamespace": EXT_NS}}},
    }))
    .expect("installplan");
    plans
        .create(&PostParams::default(), &plan)
        .await
        .expect("create installplan");

    let decoy_cm: Api<ConfigMap> = Api::namespaced(client.clone(), DECOY_NS);
    let cm_uid = decoy_cm
        .get("decoy-config")
        .await
        .expect("decoy cm")
        .uid()
        .expect("uid");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_uid = crds
        .get(FOREIGN_CRD)
        .await
        .expect("foreign crd")
        .uid()
        .expect("uid");
    (cm_uid, crd_uid)
}

async fn assert_clean(client: &Client, home: &Path, decoy: &(String, String)) {
    assert_eq!(helm_releases(home), vec![format!("{DECOY_NS}/decoy")]);
    let verify = kubesweep(&["verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "verify: {}",
        explain(&verify)
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert_absent(
        &crds,
        &[
            "installplans.kubesphere.io",
            "jsbundles.extensions.kubesphere.io",
            "widgets.demo.kubesphere.io",
        ],
    )
    .await;
    let foreign = crds.get(FOREIGN_CRD).await.expect("foreign CRD kept");
    assert_eq!(foreign.uid().as_deref(), Some(decoy.1.as_str()));
    let roles: Api<ClusterRole> = Api::all(client.clone());
    assert_absent(
        &roles,
        &["demo-reader", "demo-agent-reader", "ks-core-extra-reader"],
    )
    .await;
    assert!(
        roles
            .get_opt("helm-decoy-reader")
            .await
            .expect("get")
            .is_some()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert_absent(&namespaces, &[EXT_NS, "kubesphere-system"]).await;
    let decoy_cm: Api<ConfigMap> = Api::namespaced(client.clone(), DECOY_NS);
    let cm = decoy_cm.get("decoy-config").await.expect("decoy cm kept");
    assert_eq!(cm.uid().as_deref(), Some(decoy.0.as_str()));
    // The foreign release still works with helm after the cleanup.
    helm_ok(&["status", "decoy", "-n", DECOY_NS], home);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_helm_uninstall_of_ks_core_kubesweep_removes_the_extensions_and_the_rest() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    charts(dir.path());
    reset(&client, dir.path()).await;
    let decoy = install(&client, dir.path(), dir.path()).await;

    helm_ok(
        &["uninstall", "ks-core", "-n", "kubesphere-system"],
        dir.path(),
    );
    // What helm leaves: the extension releases, the CRDs, the InstallPlan.
    assert_eq!(
        helm_releases(dir.path()),
        vec![
            format!("{EXT_NS}/{EXT}"),
            format!("{EXT_NS}/{EXT}-agent"),
            format!("{DECOY_NS}/decoy")
        ]
    );

    let plan = kubesweep(&["plan", "-o", "json"]);
    assert!(plan.status.success(), "plan: {}", explain(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let text = plan["findings"].to_string();
    assert!(text.contains("member cluster member1"), "{text}");
    assert!(text.contains(FOREIGN_CRD), "{text}");

    let out = kubesweep(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", explain(&out));
    assert_clean(&client, dir.path(), &decoy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubesweep_alone_uninstalls_ks_core_and_its_extensions() {
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    charts(dir.path());
    reset(&client, dir.path()).await;
    let decoy = install(&client, dir.path(), dir.path()).await;

    // The plan deletes ks-core's controllers first, in the foreground: no
    // --stop-controllers needed.
    let plan = kubesweep(&["plan", "-o", "json"]);
    assert!(plan.status.success(), "plan: {}", explain(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let first = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["id"] == "helm-workloads")
        .expect("a helm-workloads phase");
    let earlier: Vec<&serde_json::Value> = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .take_while(|p| p["id"] != "helm-workloads")
        .collect();
    // Only webhooks and APIServices go before the controllers stop.
    for phase in earlier {
        assert!(
            matches!(
                phase["id"].as_str(),
                Some("preflight" | "validating-webhooks" | "mutating-webhooks" | "api-services")
            ),
            "{phase}"
        );
    }
    let controller = first["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| {
            a["target"]["name"] == "ks-controller-manager"
                && a["target"]["resource"]["kind"] == "Deployment"
        })
        .unwrap_or_else(|| panic!("ks-controller-manager not deleted first: {first}"));
    assert_eq!(controller["operation"]["propagation"], "Foreground");

    let out = kubesweep(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", explain(&out));
    assert!(
        stderr(&out).contains("the plan deletes them first"),
        "{}",
        explain(&out)
    );
    assert_clean(&client, dir.path(), &decoy).await;
}

/// A platform controller that does not go away within the wait budget (here
/// held by a foreign finalizer) stops the run after the Helm workloads
/// phase: nothing of the phases that strip finalizers or delete custom
/// resources and CRDs may run while the controller may still be alive. Once
/// it is gone, a re-run finishes the job.
#[tokio::test(flavor = "multi_thread")]
async fn a_controller_still_present_after_the_wait_stops_the_run_before_finalizers() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    const HOLD: &str = "example.com/hold";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    charts(dir.path());
    reset(&client, dir.path()).await;
    let decoy = install(&client, dir.path(), dir.path()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kubesphere-system");
    deployments
        .patch(
            "ks-controller-manager",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [HOLD]}})),
        )
        .await
        .expect("hold the controller");
    let gvk = GroupVersionKind::gvk("kubesphere.io", "v1alpha1", "InstallPlan");
    let plans: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "installplans"),
    );
    let plan_before = plans.get(EXT).await.expect("installplan");

    let out = kubesweep(&["apply", "--yes", "--wait-timeout", "4"]);
    assert_eq!(out.status.code(), Some(1), "apply: {}", explain(&out));
    assert!(
        stderr(&out).contains("stopped after helm release workloads"),
        "{}",
        explain(&out)
    );
    // The controller is still there (terminating), and nothing after its
    // phase ran: the InstallPlan is unchanged, finalizer and all.
    let held = deployments
        .get("ks-controller-manager")
        .await
        .expect("still held");
    assert!(held.metadata.deletion_timestamp.is_some());
    let plan_after = plans.get(EXT).await.expect("installplan untouched");
    assert_eq!(plan_after.uid(), plan_before.uid());
    assert_eq!(
        plan_after.resource_version(),
        plan_before.resource_version()
    );
    assert_eq!(
        plan_after.finalizers(),
        &["kubesphere.io/installplan-protection".to_string()]
    );

    // Release the controller; a re-run converges.
    let rest: Vec<String> = held
        .finalizers()
        .iter()
        .filter(|f| *f != HOLD)
        .cloned()
        .collect();
    deployments
        .patch(
            "ks-controller-manager",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
        )
        .await
        .expect("release the controller");
    let out = kubesweep(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "re-run: {}", explain(&out));
    assert_clean(&client, dir.path(), &decoy).await;
}

/// The deployed revision's manifest of a release, as helm reads it.
fn helm_manifest(release: &str, home: &Path) -> String {
    helm_ok(&["get", "manifest", release, "-n", EXT_NS], home)
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_extensions_leaves_working_helm_releases_without_kubesphere_kinds() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;

    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    charts(home);
    reset(&client, home).await;
    let decoy = install(&client, home, home).await;
    assert!(helm_manifest(EXT, home).contains("kind: JSBundle"));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), EXT_NS);
    let record_name = format!("sh.helm.release.v1.{EXT}.v1");
    let record_before = secrets.get(&record_name).await.expect("record");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), EXT_NS);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), EXT_NS);
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kept_before = (
        uid_of(&deployments, EXT).await,
        uid_of(&configs, &format!("{EXT}-config")).await,
        uid_of(&roles, &format!("{EXT}-reader")).await,
        uid_of(&crds, "widgets.demo.kubesphere.io").await,
        uid_of(&namespaces, EXT_NS).await,
    );

    let out = kubesweep(&["apply", "--yes", "--keep-extensions"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", explain(&out));

    // ks-core is gone, the extension releases stay, without KubeSphere kinds.
    assert_eq!(
        helm_releases(home),
        vec![
            format!("{EXT_NS}/{EXT}"),
            format!("{EXT_NS}/{EXT}-agent"),
            format!("{DECOY_NS}/decoy")
        ]
    );
    for release in [EXT.to_owned(), format!("{EXT}-agent")] {
        let manifest = helm_manifest(&release, home);
        assert!(!manifest.contains("JSBundle"), "{release}: {manifest}");
        assert!(
            manifest.contains("kind: Deployment"),
            "{release}: {manifest}"
        );
    }
    // The record is the same object, rewritten in place: type, labels kept.
    let record_after = secrets.get(&record_name).await.expect("record kept");
    assert_eq!(record_after.uid(), record_before.uid());
    assert_eq!(record_after.type_, record_before.type_);
    assert_eq!(record_after.labels(), record_before.labels());
    assert_ne!(record_after.data, record_before.data);
    // The extension's objects, its own CRD and namespace are untouched...
    let kept_after = (
        uid_of(&deployments, EXT).await,
        uid_of(&configs, &format!("{EXT}-config")).await,
        uid_of(&roles, &format!("{EXT}-reader")).await,
        uid_of(&crds, "widgets.demo.kubesphere.io").await,
        uid_of(&namespaces, EXT_NS).await,
    );
    assert_eq!(kept_after, kept_before);
    // ...while KubeSphere's CRDs and namespace are gone.
    assert_absent(
        &crds,
        &[
            "installplans.kubesphere.io",
            "jsbundles.extensions.kubesphere.io",
        ],
    )
    .await;
    assert_absent(&namespaces, &["kubesphere-system"]).await;
    let verify = kubesweep(&["verify", "--keep-extensions"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "verify: {}",
        explain(&verify)
    );
    let decoy_cm: Api<ConfigMap> = Api::namespaced(client.clone(), DECOY_NS);
    assert_eq!(
        decoy_cm.get("decoy-config").await.expect("decoy").uid(),
        Some(decoy.0.clone())
    );

    // Helm still manages the kept releases: upgrade, rollback, uninstall.
    let chart = home.join("ext").to_string_lossy().into_owned();
    let agent = format!("{EXT}-agent");
    helm_ok(
        &["upgrade", &agent, &chart, "-n", EXT_NS, "--set", "ui=false"],
        home,
    );
    helm_ok(&["rollback", &agent, "1", "-n", EXT_NS], home);
    for release in [EXT, agent.as_str()] {
        helm_ok(&["uninstall", release, "-n", EXT_NS, "--wait"], home);
    }
    assert_eq!(helm_releases(home), vec![format!("{DECOY_NS}/decoy")]);
    assert_absent(&deployments, &[EXT]).await;
    assert_absent(&configs, &[&format!("{EXT}-config")]).await;
    assert_absent(&roles, &[&format!("{EXT}-reader")]).await;

    // What helm leaves by design (the namespace, chart CRDs) is not for the next test.
    delete_if_present(&namespaces, EXT_NS).await;
    delete_if_present(&crds, "widgets.demo.kubesphere.io").await;
}
