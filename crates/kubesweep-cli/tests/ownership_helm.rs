//! Helm ownership under real-world ambiguity (issue 9, items 5, 6, 8, 9),
//! with the real `helm` on the real control plane. Each test builds the
//! ambiguous situation the way a user would (a second release taking an
//! object over, `helm uninstall --keep-history` and a user re-using a name,
//! a failed upgrade, a user's instances of a CRD an extension ships, an
//! extension's CRDs in a subchart or created at run time), runs `kubesweep
//! apply`, and compares the objects that must survive before and after:
//! present, same UID, same resourceVersion.

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

/// Identity and version of a live object: what must not change.
type Seen = (String, String);

async fn seen<K>(api: &Api<K>, name: &str) -> Seen
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let object = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    (
        object.uid().expect("uid"),
        object.resource_version().expect("resourceVersion"),
    )
}

/// Removes whatever an earlier test left of KubeSphere.
fn reset() {
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
}

/// What a test leaves behind or an earlier failed run left: releases
/// (`namespace/name`), namespaces, CRDs and ClusterRoles, removed.
struct Leftovers<'a> {
    releases: &'a [&'a str],
    namespaces: &'a [&'a str],
    crds: &'a [&'a str],
    cluster_roles: &'a [&'a str],
}

async fn clean(client: &Client, home: &Path, what: &Leftovers<'_>) {
    for release in what.releases {
        let (ns, name) = release.split_once('/').expect("namespace/name");
        let _ = helm(&["uninstall", name, "-n", ns, "--wait"], home);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in what.namespaces {
        delete_if_present(&namespaces, ns).await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in what.crds {
        delete_if_present(&crds, crd).await;
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for role in what.cluster_roles {
        delete_if_present(&roles, role).await;
    }
}

/// Waits until CRD `name` is Established (its status settled).
async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..100 {
        let crd = crds.get(name).await.expect("get CRD");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{name} never established");
}

/// Whether release `namespace/name` is in `helm list -A -a`.
fn installed(home: &Path, release: &str) -> bool {
    helm_releases(home).iter().any(|r| r == release)
}

/// A namespace, labelled as a user project of workspace `ws` when `project`.
async fn create_namespace(client: &Client, name: &str, project: bool) {
    let api: Api<Namespace> = Api::all(client.clone());
    delete_if_present(&api, name).await;
    let labels = if project {
        json!({"kubesphere.io/workspace": "ws"})
    } else {
        json!({})
    };
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .expect("namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

async fn create_config_map(client: &Client, ns: &str, name: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name}, "data": {"owner": "the user"}
    }))
    .expect("configmap");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
}

/// An extension chart `name`: objects labelled `kubesphere.io/extension-ref`
/// with the release's name, as KubeSphere's extension charts are.
fn extension_chart(dir: &Path, name: &str, templates: &[(&str, String)]) {
    let mut files = vec![("Chart.yaml", chart_yaml(name))];
    files.extend(templates.iter().cloned());
    write(&dir.join(name), &files);
}

const EXT_LABEL: &str = "kubesphere.io/extension-ref: '{{ .Release.Name }}'";

fn chart_path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Item 5: a ClusterRole the extension rendered, then taken over by
/// another release (`helm install --take-ownership`), is that release's.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_another_release_took_over_is_kept() {
    const EXT_NS: &str = "extension-own";
    const ADOPTER_NS: &str = "own-adopter";
    const SHARED: &str = "own-shared-reader";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["own-adopter/adopter", "extension-own/own"],
        namespaces: &[EXT_NS, ADOPTER_NS],
        crds: &[],
        cluster_roles: &[SHARED],
    };
    clean(&client, home, &leftovers).await;
    reset();
    let role_doc = |labels: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {SHARED}, labels: {{{labels}}}}}\nrules: [{{apiGroups: [\"\"], resources: [pods], verbs: [get]}}]\n"
        )
    };
    extension_chart(
        home,
        "own",
        &[
            ("templates/role.yaml", role_doc(EXT_LABEL)),
            (
                "templates/config.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: own-config, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
                ),
            ),
        ],
    );
    write(
        &home.join("adopter"),
        &[
            ("Chart.yaml", chart_yaml("adopter")),
            ("templates/role.yaml", role_doc("team: platform")),
        ],
    );
    helm_ok(
        &[
            "install",
            "own",
            &chart_path(home, "own"),
            "-n",
            EXT_NS,
            "--create-namespace",
        ],
        home,
    );
    helm_ok(
        &[
            "install",
            "adopter",
            &chart_path(home, "adopter"),
            "-n",
            ADOPTER_NS,
            "--create-namespace",
            "--take-ownership",
        ],
        home,
    );
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let taken = roles.get(SHARED).await.expect("taken-over role");
    assert_eq!(
        taken
            .annotations()
            .get("meta.helm.sh/release-name")
            .map(String::as_str),
        Some("adopter"),
        "helm did not take the role over"
    );
    let before = seen(&roles, SHARED).await;

    let out = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&out);

    // The extension is gone, the object the other release owns is not.
    assert!(!installed(home, &format!("{EXT_NS}/own")));
    assert!(installed(home, &format!("{ADOPTER_NS}/adopter")));
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), EXT_NS);
    assert_absent(&configs, &["own-config"]).await;
    assert_eq!(seen(&roles, SHARED).await, before, "{}", explain(&out));
    helm_ok(&["status", "adopter", "-n", ADOPTER_NS], home);

    clean(&client, home, &leftovers).await;
}

/// Item 6: an extension installed into a user project, uninstalled with
/// `--keep-history`; the user then creates a ConfigMap under a name the kept
/// `uninstalled` record lists. The record goes, the user's ConfigMap stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_in_kept_history_does_not_delete_what_the_user_created_since() {
    const PROJECT: &str = "hist-project";
    const NAME: &str = "app-settings";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["hist-project/hist"],
        namespaces: &[PROJECT],
        crds: &[],
        cluster_roles: &[],
    };
    clean(&client, home, &leftovers).await;
    reset();
    create_namespace(&client, PROJECT, true).await;
    extension_chart(
        home,
        "hist",
        &[(
            "templates/config.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {NAME}, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
            ),
        )],
    );
    helm_ok(
        &["install", "hist", &chart_path(home, "hist"), "-n", PROJECT],
        home,
    );
    helm_ok(
        &["uninstall", "hist", "-n", PROJECT, "--keep-history"],
        home,
    );
    assert!(installed(home, &format!("{PROJECT}/hist")));
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), PROJECT);
    assert_absent(&configs, &[NAME]).await;
    create_config_map(&client, PROJECT, NAME).await;
    let before = seen(&configs, NAME).await;

    let out = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&out);

    assert_eq!(seen(&configs, NAME).await, before, "{}", explain(&out));
    // The record itself is gone: nothing of the old release is left to act on.
    assert!(!installed(home, &format!("{PROJECT}/hist")));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(PROJECT).await.expect("get").is_some());
    clean(&client, home, &leftovers).await;
}

/// Item 6: an upgrade that failed half-way created an object the last
/// `deployed` revision does not name; `helm uninstall` acts on the latest
/// (failed) revision and deletes it, so kubesweep does too.
#[tokio::test(flavor = "multi_thread")]
async fn objects_of_a_failed_upgrade_are_removed_with_the_release() {
    const EXT_NS: &str = "extension-upg";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["extension-upg/upg"],
        namespaces: &[EXT_NS],
        crds: &[],
        cluster_roles: &[],
    };
    clean(&client, home, &leftovers).await;
    reset();
    let config = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
        )
    };
    extension_chart(
        home,
        "upg",
        &[
            ("templates/a.yaml", config("upg-a")),
            (
                "templates/b.yaml",
                format!(
                    "{{{{- if .Values.v2 }}}}\n{}{{{{- end }}}}\n",
                    config("upg-b")
                ),
            ),
            (
                // Created after the ConfigMaps (Helm's install order), and
                // rejected by the API server: the upgrade fails half-way.
                "templates/svc.yaml",
                format!(
                    "{{{{- if .Values.v2 }}}}\napiVersion: v1\nkind: Service\nmetadata: {{name: upg, labels: {{{EXT_LABEL}}}}}\nspec: {{ports: [{{port: 99999}}]}}\n{{{{- end }}}}\n"
                ),
            ),
        ],
    );
    let chart = chart_path(home, "upg");
    helm_ok(
        &["install", "upg", &chart, "-n", EXT_NS, "--create-namespace"],
        home,
    );
    let failed = helm(
        &["upgrade", "upg", &chart, "-n", EXT_NS, "--set", "v2=true"],
        home,
    );
    assert!(
        !failed.status.success(),
        "the upgrade must fail: {}",
        explain(&failed)
    );
    let history = helm_ok(&["history", "upg", "-n", EXT_NS, "-o", "json"], home);
    assert!(history.contains("\"failed\""), "{history}");
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), EXT_NS);
    uid_of(&configs, "upg-b").await;

    let out = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&out);

    assert!(!installed(home, &format!("{EXT_NS}/upg")));
    assert_absent(&configs, &["upg-a", "upg-b"]).await;
    clean(&client, home, &leftovers).await;
}

const GIZMO_GROUP: &str = "gizmo.example.org";
const GIZMO_CRD: &str = "gizmos.gizmo.example.org";

async fn create_gizmo(client: &Client, ns: &str, name: &str) {
    let gvk = GroupVersionKind::gvk(GIZMO_GROUP, "v1alpha1", "Gizmo");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "gizmos"),
    );
    let gizmo: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GIZMO_GROUP}/v1alpha1"), "kind": "Gizmo",
        "metadata": {"name": name}, "spec": {"size": 1}
    }))
    .expect("gizmo");
    // The CRD was just created: wait until it is served.
    for _ in 0..100 {
        match api.create(&PostParams::default(), &gizmo).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create gizmo: {e}"),
        }
    }
    panic!("gizmos never served");
}

/// Item 8: with `--include-shared-crds`, a CRD an extension ships outside
/// the platform's groups (as Gateway API or cert-manager CRDs are) stays
/// while a user's instance uses it, and goes once none does.
#[tokio::test(flavor = "multi_thread")]
async fn an_included_chart_crd_stays_while_a_user_uses_it() {
    const EXT_NS: &str = "extension-gz";
    const USER_NS: &str = "gizmo-user";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["extension-gz/gz"],
        namespaces: &[EXT_NS, USER_NS],
        crds: &[GIZMO_CRD],
        cluster_roles: &[],
    };
    clean(&client, home, &leftovers).await;
    reset();
    extension_chart(
        home,
        "gz",
        &[
            (
                "crds/gizmos.yaml",
                crd_yaml(GIZMO_GROUP, "Gizmo", "gizmos", "Namespaced"),
            ),
            (
                "templates/config.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gz-config, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
                ),
            ),
        ],
    );
    helm_ok(
        &[
            "install",
            "gz",
            &chart_path(home, "gz"),
            "-n",
            EXT_NS,
            "--create-namespace",
        ],
        home,
    );
    create_namespace(&client, USER_NS, false).await;
    create_gizmo(&client, USER_NS, "users-gizmo").await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let user_gizmos: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        USER_NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GIZMO_GROUP, "v1alpha1", "Gizmo"),
            "gizmos",
        ),
    );
    let crd_before = seen(&crds, GIZMO_CRD).await;
    let gizmo_before = seen(&user_gizmos, "users-gizmo").await;

    let out = kubesweep(&["apply", "--yes", "--include-shared-crds"]);
    assert_applied_clean(&out);

    assert!(!installed(home, &format!("{EXT_NS}/gz")));
    assert_eq!(
        seen(&crds, GIZMO_CRD).await,
        crd_before,
        "{}",
        explain(&out)
    );
    assert_eq!(seen(&user_gizmos, "users-gizmo").await, gizmo_before);

    // Without the user's instance, the same situation removes the CRD: the
    // rule keeps it for its users, not for ever.
    delete_if_present(&user_gizmos, "users-gizmo").await;
    helm_ok(
        &[
            "install",
            "gz",
            &chart_path(home, "gz"),
            "-n",
            EXT_NS,
            "--create-namespace",
        ],
        home,
    );
    let out = kubesweep(&["apply", "--yes", "--include-shared-crds"]);
    assert_applied_clean(&out);
    assert_absent(&crds, &[GIZMO_CRD]).await;

    clean(&client, home, &leftovers).await;
}

/// Item 9: with `--keep-extensions`, an extension's CRDs in a platform group
/// that its record does not name (a subchart's `crds/`, one its controller
/// created at run time) stay with their instances; ks-core's own CRD goes.
#[tokio::test(flavor = "multi_thread")]
async fn keep_extensions_keeps_crds_the_extension_record_does_not_name() {
    const EXT_NS: &str = "extension-sub";
    const SUB_CRD: &str = "things.sub.kubesphere.io";
    const RUNTIME_CRD: &str = "runtimes.sub.kubesphere.io";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["extension-sub/sub", "kubesphere-system/ks-core"],
        namespaces: &[EXT_NS],
        crds: &[SUB_CRD, RUNTIME_CRD],
        cluster_roles: &[],
    };
    clean(&client, home, &leftovers).await;
    reset();
    write(
        &home.join("ks-core"),
        &[
            ("Chart.yaml", chart_yaml("ks-core")),
            (
                "crds/installplans.yaml",
                crd_yaml("kubesphere.io", "InstallPlan", "installplans", "Cluster"),
            ),
            (
                "templates/config.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kubesphere-config}\ndata: {a: b}\n".into(),
            ),
        ],
    );
    extension_chart(
        home,
        "sub",
        &[
            (
                "templates/config.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sub-config, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
                ),
            ),
            ("charts/sub-crds/Chart.yaml", chart_yaml("sub-crds")),
            (
                "charts/sub-crds/crds/things.yaml",
                crd_yaml("sub.kubesphere.io", "Thing", "things", "Namespaced"),
            ),
        ],
    );
    helm_ok(
        &[
            "install",
            "ks-core",
            &chart_path(home, "ks-core"),
            "-n",
            "kubesphere-system",
            "--create-namespace",
        ],
        home,
    );
    helm_ok(
        &[
            "install",
            "sub",
            &chart_path(home, "sub"),
            "-n",
            EXT_NS,
            "--create-namespace",
        ],
        home,
    );
    // The extension's controller creates a CRD at run time.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let runtime: CustomResourceDefinition = serde_saphyr::from_str(&crd_yaml(
        "sub.kubesphere.io",
        "Runtime",
        "runtimes",
        "Namespaced",
    ))
    .expect("crd");
    crds.create(&PostParams::default(), &runtime)
        .await
        .expect("create runtime CRD");
    // Its status is written a moment after creation: compare from then on.
    wait_established(&crds, RUNTIME_CRD).await;
    let before = (seen(&crds, SUB_CRD).await, seen(&crds, RUNTIME_CRD).await);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), EXT_NS);
    let config_before = seen(&configs, "sub-config").await;

    let out = kubesweep(&["apply", "--yes", "--keep-extensions"]);
    assert_applied_clean(&out);

    assert!(installed(home, &format!("{EXT_NS}/sub")));
    assert!(!installed(home, "kubesphere-system/ks-core"));
    let after = (seen(&crds, SUB_CRD).await, seen(&crds, RUNTIME_CRD).await);
    assert_eq!(after, before, "{}", explain(&out));
    assert_eq!(seen(&configs, "sub-config").await, config_before);
    // ks-core's own CRD went: the apply did remove the platform.
    assert_absent(&crds, &["installplans.kubesphere.io"]).await;

    clean(&client, home, &leftovers).await;
}

/// Item 7 (records only): a release with a record in a storage format
/// kubesweep does not read (here a newer revision of Secret type
/// `helm.sh/release.v2`, as a future Helm may write) is reported and left
/// alone: its records, its objects and the namespace holding them stay,
/// even though the namespace is otherwise proven the platform's.
#[tokio::test(flavor = "multi_thread")]
async fn a_release_with_a_record_of_an_unknown_format_is_left_alone() {
    use k8s_openapi::api::core::v1::Secret;
    const EXT_NS: &str = "extension-fmt";
    let _lock = cluster_lock();
    let client = shared_client().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let leftovers = Leftovers {
        releases: &["extension-fmt/fmt"],
        namespaces: &[EXT_NS],
        crds: &[],
        cluster_roles: &[],
    };
    clean(&client, home, &leftovers).await;
    reset();
    // A namespace the profile proves the platform's (prefix and label).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": EXT_NS, "labels": {"kubesphere.io/extension-ref": "fmt"}}
    }))
    .expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    extension_chart(
        home,
        "fmt",
        &[(
            "templates/config.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: fmt-config, labels: {{{EXT_LABEL}}}}}\ndata: {{a: b}}\n"
            ),
        )],
    );
    helm_ok(
        &["install", "fmt", &chart_path(home, "fmt"), "-n", EXT_NS],
        home,
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), EXT_NS);
    let v1 = secrets
        .get("sh.helm.release.v1.fmt.v1")
        .await
        .expect("v1 record");
    let v2: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sh.helm.release.v1.fmt.v2",
                     "labels": {"owner": "helm", "name": "fmt", "status": "deployed", "version": "2"}},
        "type": "helm.sh/release.v2",
        "data": v1.data,
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &v2)
        .await
        .expect("create v2 record");
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), EXT_NS);
    let before = (
        seen(&secrets, "sh.helm.release.v1.fmt.v1").await,
        seen(&secrets, "sh.helm.release.v1.fmt.v2").await,
        seen(&configs, "fmt-config").await,
        seen(&namespaces, EXT_NS).await.0,
    );

    let out = kubesweep(&["apply", "--yes"]);
    assert_applied_clean(&out);

    let after = (
        seen(&secrets, "sh.helm.release.v1.fmt.v1").await,
        seen(&secrets, "sh.helm.release.v1.fmt.v2").await,
        seen(&configs, "fmt-config").await,
        seen(&namespaces, EXT_NS).await.0,
    );
    assert_eq!(after, before, "{}", explain(&out));
    let ns = namespaces.get(EXT_NS).await.expect("namespace kept");
    assert!(ns.metadata.deletion_timestamp.is_none());
    // Helm 3 itself skips the unknown record: drop it, then clean up.
    secrets
        .delete("sh.helm.release.v1.fmt.v2", &Default::default())
        .await
        .expect("delete v2 record");
    clean(&client, home, &leftovers).await;
}
