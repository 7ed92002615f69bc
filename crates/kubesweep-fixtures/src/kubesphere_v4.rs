//! The `kubesphere-v4` profile: what a KubeSphere 4.1 host cluster holds after `helm uninstall
//! ks-core` (fact sheet sections 2 to 7): the 39 CRDs and their instances with finalizers, some
//! Terminating; labelled system namespaces; workspaces and their projects with user data; an
//! extension with its Helm release, helper RBAC and aggregated APIService; webhooks pointing at the
//! deleted `ks-controller-manager`; hook leftovers. Foreign decoys come from [`crate::decoys`].

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role as RbacRole, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};

use crate::crds::{FOREIGN_CRDS, KUBESPHERE_V4_CRDS, kubesphere_crd as crd};
use crate::decoys;
use crate::footprint::{ObjectKey, Role};
use crate::helm::{Chart, ChartMetadata, Release, ReleaseInfo, render_manifest};
use crate::plan::{
    HELM_MANAGER, HOOK_MANAGER, KS_MANAGER, Meta, Plan, Stage, USER_MANAGER, owner, typed,
};
use crate::scale::Scale;

/// Profile name on the command line.
pub const PROFILE: &str = "kubesphere-v4";
/// The extension the profile installs.
pub const EXTENSION: &str = "whizard-monitoring";
/// Its target namespace.
pub const EXTENSION_NAMESPACE: &str = "extension-whizard-monitoring";
/// The extension's data: a PersistentVolumeClaim in its namespace (no storage class, so it stays
/// Pending), which `--keep-data` keeps with the namespace.
pub const EXTENSION_CLAIM: &str = "data-whizard-monitoring-0";
/// The Job (and ConfigMap of the same name) the Helm executor left in the extension's namespace.
pub const EXECUTOR_JOB: &str = "helm-install-whizard-monitoring-";
/// Its aggregated APIService, backed by a Service that no longer exists.
pub const EXTENSION_APISERVICE: &str = "v1alpha1.monitoring.kubesphere.io";
/// The workspace KubeSphere creates for its own namespaces.
pub const SYSTEM_WORKSPACE: &str = "system-workspace";
/// Namespaces KubeSphere creates and a cleanup deletes (besides the extension's).
pub const PLATFORM_NAMESPACES: &[&str] = &["kubesphere-system", "kubesphere-controls-system"];
/// Namespaces that must survive, which the post-install hook labels.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// The Service every KubeSphere webhook calls; deleted by `helm uninstall`.
pub const WEBHOOK_SERVICE: (&str, &str) = ("kubesphere-system", "ks-controller-manager");

const CASCADING: &str = "kubesphere.io/cascading-deletion";
pub(crate) const RELEASE_TIME: &str = "2025-01-06T08:00:00Z";
/// A real PKCS#10 request for CN=admin (the API server parses it): generated once, the key discarded.
const ADMIN_CSR_PEM: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHKMHICAQAwEDEOMAwGA1UEAwwFYWRtaW4wWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAATDigDpN+TU7kYdZ3hTCLKopDIOpD8R3I71UDBj5UpIUqJnz4HBTQ3YJKA/
+18m/FyvRjjVdd6tf3b4ELZ+6BvEoAAwCgYIKoZIzj0EAwIDSAAwRQIgF4NrlydB
8PETJIUAyZQxpmRZoEAvCHynGNZhyuigmI4CIQCs3MqavFfcPMR74MYcfq30birG
GCXiWTttkjTN0wcK5A==
-----END CERTIFICATE REQUEST-----
";

/// Name of the `i`-th user workspace (0-based): the first is `demo-workspace`.
pub fn workspace_name(i: usize) -> String {
    if i == 0 {
        "demo-workspace".to_string()
    } else {
        format!("workspace-{i:03}")
    }
}

/// Name of the `j`-th project (1-based) of a workspace.
pub fn project_name(workspace: &str, j: usize) -> String {
    format!("{workspace}-project-{j}")
}

/// Builds the whole plan.
pub(crate) fn plan(scale: Scale) -> Plan {
    let mut p = Plan::default();
    decoys::first(&mut p);
    for c in KUBESPHERE_V4_CRDS {
        p.crd(c, Role::Platform);
    }
    for c in FOREIGN_CRDS {
        p.crd(c, Role::Foreign);
    }
    namespaces(&mut p);
    global_iam(&mut p);
    workspace(&mut p, SYSTEM_WORKSPACE, true);
    for i in 0..scale.workspaces {
        tenant(&mut p, &workspace_name(i), i, scale);
    }
    extension(&mut p);
    app_store(&mut p);
    cluster_objects(&mut p);
    hook_leftovers(&mut p);
    decoys::add(&mut p);
    webhooks(&mut p);
    p
}

fn ns_ar() -> kube::core::ApiResource {
    typed::<Namespace>()
}

/// The hook's labels on KubeSphere's own and the system namespaces.
fn hook_labels(meta: Meta) -> Meta {
    meta.label("kubesphere.io/workspace", SYSTEM_WORKSPACE)
        .label("kubesphere.io/managed", "true")
        .label("kubesphere.io/protected-resource", "true")
}

pub(crate) fn namespaces(p: &mut Plan) {
    for ns in PLATFORM_NAMESPACES {
        let meta = hook_labels(Meta::new()).finalizer(CASCADING);
        p.add(
            &ns_ar(),
            None,
            ns,
            Role::Platform,
            HOOK_MANAGER,
            meta,
            Value::Null,
        );
    }
    let meta = Meta::new()
        .label("kubesphere.io/extension-ref", EXTENSION)
        .label("kubesphere.io/managed", "true")
        .annotation("kubesphere.io/creator", "admin");
    p.add(
        &ns_ar(),
        None,
        EXTENSION_NAMESPACE,
        Role::Platform,
        KS_MANAGER,
        meta,
        Value::Null,
    );

    for ns in SYSTEM_NAMESPACES {
        let kubesphere = hook_labels(Meta::new()).finalizer(CASCADING);
        let foreign = Meta::new()
            .label("acme.example.com/team", "platform")
            .annotation("acme.example.com/owner", "ops")
            .finalizer("acme.example.com/keep");
        p.system_namespace(ns, kubesphere, foreign);
    }
}

fn user_meta(user: &str) -> Meta {
    Meta::new().label("iam.kubesphere.io/user-ref", user)
}

fn add_user(p: &mut Plan, name: &str, global_role: &str, terminating: bool) -> ObjectKey {
    let users = crd("iam.kubesphere.io", "users");
    let mut meta = Meta::new()
        .annotation("iam.kubesphere.io/globalrole", global_role)
        .annotation("kubesphere.io/creator", "admin")
        .finalizers(users.finalizers);
    if terminating {
        meta = meta.terminating();
    }
    let key = p.cr(
        users,
        None,
        name,
        Role::Platform,
        meta,
        json!({
            "spec": {"email": format!("{name}@kubesphere.io"), "lang": "en",
                     "password": "$2a$10$Yw3xV1bYvNDfKkJqpC0rXOBsSfBwnRlmS6NP0Jx3BVEJnYH5t9JRa"},
            "status": {"state": "Active", "lastLoginTime": RELEASE_TIME}
        }),
    );
    p.cr(
        crd("iam.kubesphere.io", "loginrecords"),
        None,
        &format!("{name}-{}", short_hash(name)),
        Role::Platform,
        Meta::new().label("kubesphere.io/username", name),
        json!({"spec": {"type": "Token", "provider": "", "success": true, "sourceIP": "10.0.0.7",
                        "userAgent": "Mozilla/5.0", "reason": "authenticated successfully"}}),
    );
    let grb = crd("iam.kubesphere.io", "globalrolebindings");
    let binding = if name == "admin" {
        "admin".to_string()
    } else {
        format!("{name}-{global_role}")
    };
    p.cr(
        grb,
        None,
        &binding,
        Role::Platform,
        user_meta(name)
            .label("iam.kubesphere.io/role-ref", global_role)
            .finalizers(grb.finalizers),
        json!({
            "roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "GlobalRole", "name": global_role},
            "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": name}]
        }),
    );
    key
}

/// Five lowercase characters derived from a name, like the random suffixes KubeSphere appends, but
/// stable so that seeding twice addresses the same objects.
fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(s.as_bytes());
    digest
        .iter()
        .take(5)
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

pub(crate) fn global_iam(p: &mut Plan) {
    let gr = crd("iam.kubesphere.io", "globalroles");
    // Built-in global roles belong to the ks-core release: Helm deleted them, their finalizers keep them.
    for name in [
        "platform-admin",
        "platform-regular",
        "platform-self-provisioner",
        "anonymous",
    ] {
        p.cr(
            gr,
            None,
            name,
            Role::Platform,
            Meta::new()
                .label("iam.kubesphere.io/role-template", "false")
                .annotation("meta.helm.sh/release-name", "ks-core")
                .annotation("meta.helm.sh/release-namespace", "kubesphere-system")
                .finalizers(gr.finalizers)
                .terminating(),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        );
    }
    p.cr(
        gr,
        None,
        "auditor",
        Role::Platform,
        Meta::new()
            .annotation("iam.kubesphere.io/aggregation-roles", "[\"global-view-users\"]")
            .annotation("kubesphere.io/creator", "admin")
            .finalizers(gr.finalizers),
        json!({"aggregationRoleTemplates": {"templateNames": ["global-view-users"]},
               "rules": [{"apiGroups": ["iam.kubesphere.io"], "resources": ["users"], "verbs": ["get", "list"]}]}),
    );
    add_user(p, "admin", "platform-admin", true);

    // An iam ClusterRole and ClusterRoleBinding and the native copies the controller made of them.
    let icr = p.cr(
        crd("iam.kubesphere.io", "clusterroles"),
        None,
        "custom-cluster-viewer",
        Role::Platform,
        Meta::new().annotation("kubesphere.io/creator", "admin"),
        json!({"rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]}),
    );
    p.add(
        &typed::<ClusterRole>(),
        None,
        "kubesphere:iam:custom-cluster-viewer",
        Role::Platform,
        KS_MANAGER,
        Meta::new()
            .label("iam.kubesphere.io/clusterrole-ref", "custom-cluster-viewer")
            .owner(owner(&icr, None, true, true)),
        json!({"rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]}),
    );
    let icrb = p.cr(
        crd("iam.kubesphere.io", "clusterrolebindings"),
        None,
        "admin-custom-cluster-viewer",
        Role::Platform,
        user_meta("admin"),
        json!({"roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "ClusterRole", "name": "custom-cluster-viewer"},
               "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": "admin"}]}),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "kubesphere:iam:admin-custom-cluster-viewer",
        Role::Platform,
        KS_MANAGER,
        Meta::new()
            .label("iam.kubesphere.io/clusterrolebinding-ref", "admin-custom-cluster-viewer")
            .owner(owner(&icrb, None, true, true)),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "kubesphere:iam:custom-cluster-viewer"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "admin"}]}),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "admin-cluster-admin",
        Role::Platform,
        KS_MANAGER,
        user_meta("admin"),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "admin"}]}),
    );
    p.add(
        &typed::<CertificateSigningRequest>(),
        None,
        "admin-csr-1736150400",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("kubesphere.io/username", "admin"),
        json!({"spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(ADMIN_CSR_PEM),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "client auth"]
        }}),
    );
    p.add(
        &typed::<Secret>(),
        Some("kubesphere-system"),
        "kubeconfig-admin",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("config.kubesphere.io/type", "kubeconfig").label("kubesphere.io/user-ref", "admin"),
        json!({"type": "config.kubesphere.io/kubeconfig",
               "stringData": {"config": "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"}}),
    );
    p.add(
        &typed::<ServiceAccount>(),
        Some("kubesphere-system"),
        "kubesphere.users.admin",
        Role::Platform,
        KS_MANAGER,
        user_meta("admin"),
        Value::Null,
    );
}

/// A WorkspaceTemplate and the Workspace the controller made from it (owned by the template).
pub(crate) fn workspace(p: &mut Plan, name: &str, system: bool) -> ObjectKey {
    let wst = crd("tenant.kubesphere.io", "workspacetemplates");
    let mut meta = Meta::new()
        .annotation("kubesphere.io/creator", "admin")
        .finalizers(wst.finalizers);
    if system {
        // Part of the ks-core release and protected: Helm's delete left it Terminating.
        meta = meta
            .label("kubesphere.io/protected-resource", "true")
            .annotation("meta.helm.sh/release-name", "ks-core")
            .annotation("meta.helm.sh/release-namespace", "kubesphere-system")
            .terminating();
    }
    let template = p.cr(
        wst,
        None,
        name,
        Role::Platform,
        meta,
        json!({"spec": {"template": {"spec": {"manager": "admin"}},
                        "placement": {"clusters": [{"name": "host"}]}}}),
    );
    let ws = crd("tenant.kubesphere.io", "workspaces");
    p.cr(
        ws,
        None,
        name,
        Role::Platform,
        Meta::new()
            .label("kubefed.io/managed", "false")
            .annotation("kubesphere.io/creator", "admin")
            .finalizers(ws.finalizers)
            .owner(owner(&template, None, true, true)),
        json!({"spec": {"manager": "admin"}}),
    )
}

pub(crate) fn tenant(p: &mut Plan, ws_name: &str, index: usize, scale: Scale) {
    let ws = workspace(p, ws_name, false);
    let o = scale.objects_per_kind;
    let wsr = crd("iam.kubesphere.io", "workspaceroles");
    let wsrb = crd("iam.kubesphere.io", "workspacerolebindings");
    let role_names: Vec<String> = (0..o.max(1))
        .map(|k| match k {
            0 => format!("{ws_name}-admin"),
            1 => format!("{ws_name}-viewer"),
            _ => format!("{ws_name}-role-{k}"),
        })
        .collect();
    for r in &role_names {
        p.cr(
            wsr,
            None,
            r,
            Role::Platform,
            Meta::new()
                .label("kubesphere.io/workspace", ws_name)
                .finalizers(wsr.finalizers),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]}),
        );
    }
    let users: Vec<String> = (1..=o).map(|k| format!("{ws_name}-user-{k}")).collect();
    for (k, u) in users.iter().enumerate() {
        add_user(p, u, "platform-regular", false);
        let role = &role_names[k % role_names.len()];
        p.cr(
            wsrb,
            None,
            &format!("{u}-{role}"),
            Role::Platform,
            user_meta(u).label("kubesphere.io/workspace", ws_name).finalizers(wsrb.finalizers),
            json!({"roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "WorkspaceRole", "name": role},
                   "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": u}]}),
        );
    }
    let group = crd("iam.kubesphere.io", "groups");
    let group_name = format!("{ws_name}-developers");
    p.cr(
        group,
        None,
        &group_name,
        Role::Platform,
        Meta::new()
            .label("kubesphere.io/workspace", ws_name)
            .finalizers(group.finalizers),
        json!({"spec": {}}),
    );
    let gb = crd("iam.kubesphere.io", "groupbindings");
    let member = users.first().map_or("admin", String::as_str);
    p.cr(
        gb,
        None,
        &format!("{group_name}-{member}"),
        Role::Platform,
        Meta::new()
            .label("iam.kubesphere.io/group-ref", &group_name)
            .finalizers(gb.finalizers),
        json!({"groupRef": {"apiGroup": "iam.kubesphere.io", "kind": "Group", "name": group_name},
               "users": [member]}),
    );
    p.cr(
        crd("quota.kubesphere.io", "resourcequotas"),
        None,
        ws_name,
        Role::Platform,
        Meta::new()
            .label("kubesphere.io/workspace", ws_name)
            .owner(owner(&ws, None, true, true)),
        json!({"spec": {"selector": {"kubesphere.io/workspace": ws_name},
                        "quota": {"hard": {"limits.cpu": "8", "limits.memory": "16Gi"}}}}),
    );
    for j in 1..=scale.projects_per_workspace {
        project(
            p,
            &ws,
            ws_name,
            &project_name(ws_name, j),
            j,
            index == 0 && j == 1,
            scale,
        );
    }
}

fn project(
    p: &mut Plan,
    ws: &ObjectKey,
    ws_name: &str,
    ns: &str,
    j: usize,
    showcase: bool,
    scale: Scale,
) {
    let mut meta = Meta::new()
        .label("kubesphere.io/workspace", ws_name)
        .annotation("kubesphere.io/creator", "admin")
        .annotation(
            "kubesphere.io/alias-name",
            &format!("Project {j} of {ws_name}"),
        )
        .annotation("kubesphere.io/description", "created from the console")
        .finalizer(CASCADING);
    match j {
        // 3.x style: the namespace label, the 3.x finalizer, and an ownerReference to the Workspace
        // at v1alpha1 that lets the garbage collector delete the namespace with its workspace
        // (kubesphere#3772). Another vendor's keys sit beside KubeSphere's.
        1 => {
            meta = meta
                .label("kubesphere.io/namespace", ns)
                .finalizer("finalizers.kubesphere.io/namespaces")
                .finalizer("acme.example.com/keep")
                .annotation("acme.example.com/cost-center", "42")
                .owner(owner(ws, Some("tenant.kubesphere.io/v1alpha1"), true, true));
        }
        // 4.1.1/4.1.2 labelled every project managed.
        2 => meta = meta.label("kubesphere.io/managed", "true"),
        _ => {}
    }
    p.add(
        &ns_ar(),
        None,
        ns,
        Role::User,
        KS_MANAGER,
        meta,
        Value::Null,
    );

    let o = scale.objects_per_kind;
    for k in 1..=o {
        p.add(
            &typed::<ConfigMap>(),
            Some(ns),
            &format!("app-config-{k}"),
            Role::User,
            USER_MANAGER,
            Meta::new().label("app", "demo"),
            json!({"data": {"settings.yaml": format!("replicas: {k}\nfeature: on\n")}}),
        );
        p.add(
            &typed::<Secret>(),
            Some(ns),
            &format!("app-secret-{k}"),
            Role::User,
            USER_MANAGER,
            Meta::new().label("app", "demo"),
            json!({"type": "Opaque", "stringData": {"password": format!("s3cret-{k}")}}),
        );
        p.add(
            &typed::<ServiceAccount>(),
            Some(ns),
            &format!("app-sa-{k}"),
            Role::User,
            USER_MANAGER,
            Meta::new().label("app", "demo"),
            Value::Null,
        );
    }
    let mut deploy_meta = Meta::new().label("app", "demo");
    if showcase {
        // An Application (app.k8s.io) the user composed in the console: it adds
        // blocking ownerReferences to the user's workloads, and the console
        // stamps `kubesphere.io/creator` on it as on everything a user makes.
        // That annotation is no proof of the platform's ownership: it stays.
        let app = p.cr(
            crd("app.k8s.io", "applications"),
            Some(ns),
            "demo-app",
            Role::User,
            Meta::new()
                .label("app.kubernetes.io/name", "demo-app")
                .annotation("kubesphere.io/creator", "admin"),
            json!({"spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "demo-app"}},
                            "componentKinds": [{"group": "apps", "kind": "Deployment"}]}}),
        );
        deploy_meta = deploy_meta
            .label("app.kubernetes.io/name", "demo-app")
            .owner(owner(&app, None, false, true));
        // A user object owned by another vendor's object: that reference must stay.
        let widget = p.cr(
            crd("acme.example.com", "widgets"),
            Some(ns),
            "acme-widget",
            Role::Foreign,
            Meta::new()
                .label("acme.example.com/tier", "gold")
                .finalizer("acme.example.com/protect"),
            json!({"spec": {"size": 3}}),
        );
        p.add(
            &typed::<ConfigMap>(),
            Some(ns),
            "widget-settings",
            Role::User,
            USER_MANAGER,
            Meta::new().owner(owner(&widget, None, true, true)),
            json!({"data": {"size": "3"}}),
        );
    }
    p.add(
        &typed::<Deployment>(),
        Some(ns),
        "app",
        Role::User,
        USER_MANAGER,
        deploy_meta,
        deployment("demo", 0),
    );

    // Project-level IAM: iam CRs, and the native RBAC the controller mirrored from them.
    let role = p.cr(
        crd("iam.kubesphere.io", "roles"),
        Some(ns),
        "operator",
        Role::Platform,
        Meta::new().label("kubesphere.io/workspace", ws_name),
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
    );
    p.add(
        &typed::<RbacRole>(),
        Some(ns),
        "kubesphere:iam:operator",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("iam.kubesphere.io/role-ref", "operator").owner(owner(&role, None, true, true)),
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
    );
    let rb = p.cr(
        crd("iam.kubesphere.io", "rolebindings"),
        Some(ns),
        "admin-operator",
        Role::Platform,
        user_meta("admin"),
        json!({"roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "Role", "name": "operator"},
               "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": "admin"}]}),
    );
    p.add(
        &typed::<RoleBinding>(),
        Some(ns),
        "kubesphere:iam:admin-operator",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("iam.kubesphere.io/rolebinding-ref", "admin-operator").owner(owner(&rb, None, true, true)),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubesphere:iam:operator"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "admin"}]}),
    );
    let ksa = crd("kubesphere.io", "serviceaccounts");
    p.cr(
        ksa,
        Some(ns),
        "robot",
        Role::Platform,
        Meta::new()
            .annotation("iam.kubesphere.io/role", "operator")
            .finalizers(ksa.finalizers),
        json!({"secrets": []}),
    );
}

pub(crate) fn deployment(app: &str, replicas: u32) -> Value {
    // Zero replicas: the test control plane runs no scheduler or kubelet, and a Deployment with
    // nothing to roll out settles after two status writes, which keeps snapshots stable.
    json!({"spec": {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": app, "image": "registry.example.com/demo/app:1.0"}]}
        }
    }})
}

fn ext_meta() -> Meta {
    Meta::new().label("kubesphere.io/extension-ref", EXTENSION)
}

/// What the extension's chart rendered: labels and Helm's ownership annotations.
fn rendered_meta() -> Meta {
    ext_meta()
        .label("app.kubernetes.io/managed-by", "Helm")
        .annotation("meta.helm.sh/release-name", EXTENSION)
        .annotation("meta.helm.sh/release-namespace", EXTENSION_NAMESPACE)
}

fn extension(p: &mut Plan) {
    let repo = crd("kubesphere.io", "repositories");
    p.cr(
        repo,
        None,
        "extensions-museum",
        Role::Platform,
        Meta::new()
            .annotation("meta.helm.sh/release-name", "ks-core")
            .annotation("meta.helm.sh/release-namespace", "kubesphere-system")
            .finalizers(repo.finalizers)
            .terminating(),
        json!({"spec": {"image": "docker.io/kubesphere/ks-extensions-museum:v1.1.2",
                        "updateStrategy": {"interval": "6h0m0s", "timeout": "5m0s"}}}),
    );
    p.cr(
        crd("kubesphere.io", "categories"),
        None,
        "monitoring",
        Role::Platform,
        Meta::new(),
        json!({"spec": {"displayName": {"en": "Monitoring"}}}),
    );
    let ext = crd("kubesphere.io", "extensions");
    p.cr(
        ext,
        None,
        EXTENSION,
        Role::Platform,
        Meta::new()
            .label("kubesphere.io/repository-ref", "extensions-museum")
            .label("kubesphere.io/category", "monitoring")
            .finalizers(ext.finalizers),
        json!({"spec": {"displayName": {"en": "WhizardTelemetry Monitoring"}, "provider": {"en": {"name": "KubeSphere"}}},
               "status": {"state": "Installed", "recommendedVersion": "1.1.0"}}),
    );
    p.cr(
        crd("kubesphere.io", "extensionversions"),
        None,
        &format!("{EXTENSION}-1.1.0"),
        Role::Platform,
        ext_meta().label("kubesphere.io/repository-ref", "extensions-museum"),
        json!({"spec": {"version": "1.1.0", "namespace": EXTENSION_NAMESPACE,
                        "chartURL": format!("http://extensions-museum.kubesphere-system.svc/charts/{EXTENSION}-1.1.0.tgz")}}),
    );
    let ip = crd("kubesphere.io", "installplans");
    p.cr(
        ip,
        None,
        EXTENSION,
        Role::Platform,
        Meta::new().finalizers(ip.finalizers),
        json!({"spec": {"extension": {"name": EXTENSION, "version": "1.1.0"}, "enabled": true,
                        "upgradeStrategy": "Manual"},
               "status": {"state": "Installed", "releaseName": EXTENSION, "targetNamespace": EXTENSION_NAMESPACE,
                          "version": "1.1.0"}}),
    );
    p.cr(
        crd("extensions.kubesphere.io", "jsbundles"),
        None,
        &format!("{EXTENSION}-js"),
        Role::Platform,
        ext_meta(),
        json!({"spec": {"rawFrom": {"url": format!("http://{EXTENSION}-apiserver.{EXTENSION_NAMESPACE}.svc/dist/index.js")}},
               "status": {"link": format!("/dist/{EXTENSION}/index.js"), "state": "Available"}}),
    );
    p.cr(
        crd("extensions.kubesphere.io", "reverseproxies"),
        None,
        &format!("{EXTENSION}-proxy"),
        Role::Platform,
        ext_meta(),
        json!({"spec": {"matcher": {"method": "*", "path": "/proxy/whizard/*"},
                        "upstream": {"service": {"namespace": EXTENSION_NAMESPACE, "name": format!("{EXTENSION}-apiserver"), "port": 443}}}}),
    );
    p.cr(
        crd("extensions.kubesphere.io", "extensionentries"),
        None,
        &format!("{EXTENSION}-entry"),
        Role::Platform,
        ext_meta(),
        json!({"spec": {"entries": [{"name": "monitoring", "link": "/monitoring"}]}}),
    );
    p.cr(
        crd("extensions.kubesphere.io", "apiservices"),
        None,
        &format!("{EXTENSION}-api"),
        Role::Platform,
        ext_meta(),
        json!({"spec": {"group": "monitoring.kubesphere.io", "version": "v1alpha1",
                        "endpoint": {"service": {"namespace": EXTENSION_NAMESPACE, "name": format!("{EXTENSION}-apiserver"), "port": 443}}}}),
    );
    p.cr(
        crd("iam.kubesphere.io", "roletemplates"),
        None,
        &format!("{EXTENSION}-view-metrics"),
        Role::Platform,
        ext_meta().label("iam.kubesphere.io/scope", "cluster").label("iam.kubesphere.io/category", "monitoring"),
        json!({"spec": {"displayName": {"en": "Metrics Viewing"},
                        "rules": [{"apiGroups": ["monitoring.kubesphere.io"], "resources": ["*"], "verbs": ["get", "list"]}]}}),
    );
    p.cr(
        crd("iam.kubesphere.io", "categories"),
        None,
        "monitoring",
        Role::Platform,
        ext_meta().label("iam.kubesphere.io/scope", "cluster"),
        json!({"spec": {"displayName": {"en": "Monitoring"}}}),
    );

    // Helper RBAC of the Helm executor.
    let helper = format!("kubesphere:{EXTENSION}:helm-executor");
    let sa_name = format!("helm-executor.{EXTENSION}");
    let subject =
        json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": EXTENSION_NAMESPACE}]);
    // KubeSphere names this ServiceAccount in its RBAC but sets no label on it.
    p.add(
        &typed::<ServiceAccount>(),
        Some(EXTENSION_NAMESPACE),
        &sa_name,
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        Value::Null,
    );
    let all = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    p.add(
        &typed::<ClusterRole>(),
        None,
        &helper,
        Role::Platform,
        KS_MANAGER,
        ext_meta(),
        all.clone(),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        &helper,
        Role::Platform,
        KS_MANAGER,
        ext_meta(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": helper}, "subjects": subject}),
    );
    p.add(
        &typed::<RbacRole>(),
        Some(EXTENSION_NAMESPACE),
        &helper,
        Role::Platform,
        KS_MANAGER,
        ext_meta(),
        all,
    );
    p.add(
        &typed::<RoleBinding>(),
        Some(EXTENSION_NAMESPACE),
        &helper,
        Role::Platform,
        KS_MANAGER,
        ext_meta(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": helper}, "subjects": subject}),
    );
    // What the executor Job left: its values ConfigMap and the (suspended, so podless) Job.
    let job_name = format!("{EXECUTOR_JOB}{}", short_hash(EXTENSION));
    let exec_meta = || ext_meta().label("kubesphere.io/managed", "true");
    p.add(
        &typed::<ConfigMap>(),
        Some(EXTENSION_NAMESPACE),
        &job_name,
        Role::Platform,
        KS_MANAGER,
        exec_meta(),
        json!({"data": {"values.yaml": "global:\n  imageRegistry: docker.io\n"}}),
    );
    p.add(
        &typed::<Job>(),
        Some(EXTENSION_NAMESPACE),
        &job_name,
        Role::Platform,
        KS_MANAGER,
        exec_meta(),
        json!({"spec": {"suspend": true, "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "serviceAccountName": sa_name,
            "containers": [{"name": "helm", "image": "kubesphere/kubectl:v1.27.16", "args": ["helm", "upgrade", "--install"]}]
        }}}}),
    );

    // The extension's data.
    p.add(
        &typed::<PersistentVolumeClaim>(),
        Some(EXTENSION_NAMESPACE),
        EXTENSION_CLAIM,
        Role::Platform,
        "kube-controller-manager",
        Meta::new().label("app", &format!("{EXTENSION}-store")),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    );

    // The release's objects: those still running, and the Service that is already gone (which
    // leaves the aggregated APIService unavailable).
    let apiserver = format!("{EXTENSION}-apiserver");
    let mut docs: Vec<(&str, Value)> = Vec::new();
    let config = json!({"data": {"config.yaml": "retention: 7d\n"}});
    let ar_cm = typed::<ConfigMap>();
    let cm = p.add(
        &ar_cm,
        Some(EXTENSION_NAMESPACE),
        &format!("{EXTENSION}-config"),
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        config,
    );
    docs.push(("configmap.yaml", rendered(p, &cm)));
    let sa = p.add(
        &typed::<ServiceAccount>(),
        Some(EXTENSION_NAMESPACE),
        &apiserver,
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        Value::Null,
    );
    docs.push(("serviceaccount.yaml", rendered(p, &sa)));
    let dep = p.add(
        &typed::<Deployment>(),
        Some(EXTENSION_NAMESPACE),
        &apiserver,
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        deployment(&apiserver, 0),
    );
    docs.push(("deployment.yaml", rendered(p, &dep)));
    let cr = p.add(
        &typed::<ClusterRole>(),
        None,
        &apiserver,
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        json!({"rules": [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}),
    );
    docs.push(("clusterrole.yaml", rendered(p, &cr)));
    let crb = p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        &apiserver,
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": apiserver},
               "subjects": [{"kind": "ServiceAccount", "name": apiserver, "namespace": EXTENSION_NAMESPACE}]}),
    );
    docs.push(("clusterrolebinding.yaml", rendered(p, &crb)));
    let apisvc = p.add_staged(
        &typed::<APIService>(),
        None,
        EXTENSION_APISERVICE,
        Role::Platform,
        HELM_MANAGER,
        rendered_meta(),
        json!({"spec": {"group": "monitoring.kubesphere.io", "version": "v1alpha1", "insecureSkipTLSVerify": true,
                        "groupPriorityMinimum": 1000, "versionPriority": 100,
                        "service": {"namespace": EXTENSION_NAMESPACE, "name": apiserver, "port": 443}}}),
        Stage::Last,
    );
    docs.push(("apiservice.yaml", rendered(p, &apisvc)));
    let mut service = rendered_meta_doc("v1", "Service", &apiserver);
    service["spec"] =
        json!({"selector": {"app": apiserver}, "ports": [{"port": 443, "targetPort": 9090}]});
    docs.push(("service.yaml", service));
    // A kind whose CRD went away with the extension's agent: an uninstaller must skip it.
    let mut gone = rendered_meta_doc(
        "monitoring.whizard.io/v1alpha1",
        "Gateway",
        &format!("{EXTENSION}-gateway"),
    );
    gone["spec"] = json!({"replicas": 1});
    docs.push(("gateway.yaml", gone));

    let release = Release {
        name: EXTENSION.into(),
        namespace: EXTENSION_NAMESPACE.into(),
        version: 1,
        info: ReleaseInfo {
            status: "deployed".into(),
            first_deployed: RELEASE_TIME.into(),
            last_deployed: RELEASE_TIME.into(),
            description: "Install complete".into(),
        },
        chart: Chart {
            metadata: ChartMetadata {
                name: EXTENSION.into(),
                version: "1.1.0".into(),
                app_version: "1.1.0".into(),
            },
        },
        manifest: render_manifest(EXTENSION, &docs),
    };
    // Encoding a fixed, small struct cannot fail; a failure here is a bug in the encoder.
    let encoded = release
        .encode()
        .expect("encode the extension's release record");
    p.add(
        &typed::<Secret>(),
        Some(EXTENSION_NAMESPACE),
        &release.secret_name(),
        Role::Platform,
        HELM_MANAGER,
        Meta::new()
            .label("owner", "helm")
            .label("name", EXTENSION)
            .label("status", "deployed")
            .label("version", "1"),
        json!({"type": "helm.sh/release.v1", "stringData": {"release": encoded}}),
    );
}

/// The manifest of an item already in the plan, as Helm rendered it (no namespace on cluster-scoped
/// objects, no finalizers).
fn rendered(p: &Plan, key: &ObjectKey) -> Value {
    let item = p
        .items
        .iter()
        .find(|i| &i.object.key == key)
        .map(|i| i.manifest.clone());
    item.unwrap_or(Value::Null)
}

fn rendered_meta_doc(api_version: &str, kind: &str, name: &str) -> Value {
    let m = rendered_meta();
    json!({"apiVersion": api_version, "kind": kind,
           "metadata": {"name": name, "namespace": EXTENSION_NAMESPACE, "labels": m.labels, "annotations": m.annotations}})
}

fn app_store(p: &mut Plan) {
    p.cr(
        crd("application.kubesphere.io", "repos"),
        None,
        "bitnami",
        Role::Platform,
        Meta::new().label("kubesphere.io/workspace", "demo-workspace"),
        json!({"spec": {"url": "https://charts.bitnami.com/bitnami", "syncPeriod": 3600}}),
    );
    let cat = crd("application.kubesphere.io", "categories");
    p.cr(
        cat,
        None,
        "kubesphere-app-uncategorized",
        Role::Platform,
        Meta::new().finalizers(cat.finalizers),
        json!({"spec": {"icon": "documentation"}}),
    );
    p.cr(
        crd("application.kubesphere.io", "applications"),
        None,
        "nginx",
        Role::Platform,
        Meta::new()
            .label("application.kubesphere.io/repo-name", "bitnami")
            .label(
                "application.kubesphere.io/app-category-name",
                "kubesphere-app-uncategorized",
            ),
        json!({"spec": {"appType": "helm", "displayName": {"en": "nginx"}}}),
    );
    let av = crd("application.kubesphere.io", "applicationversions");
    p.cr(
        av,
        None,
        "nginx-15.0.0",
        Role::Platform,
        Meta::new()
            .label("application.kubesphere.io/app-id", "nginx")
            .finalizers(av.finalizers),
        json!({"spec": {"versionName": "15.0.0", "appType": "helm"}}),
    );
    let rel = crd("application.kubesphere.io", "applicationreleases");
    let ns = project_name(&workspace_name(0), 1);
    p.cr(
        rel,
        None,
        "demo-nginx",
        Role::Platform,
        Meta::new()
            .label("application.kubesphere.io/app-id", "nginx")
            .label("kubesphere.io/namespace", &ns)
            .label("kubesphere.io/workspace", "demo-workspace")
            .finalizers(rel.finalizers),
        json!({"spec": {"appID": "nginx", "appVersionID": "nginx-15.0.0", "appType": "helm"},
               "status": {"state": "active", "targetNamespace": ns}}),
    );
}

fn cluster_objects(p: &mut Plan) {
    let cluster = crd("cluster.kubesphere.io", "clusters");
    p.cr(
        cluster,
        None,
        "host",
        Role::Platform,
        Meta::new()
            .label("cluster-role.kubesphere.io/host", "")
            .label("kubesphere.io/managed", "true")
            .finalizers(cluster.finalizers),
        json!({"spec": {"provider": "kubesphere", "enable": true, "joinFederation": false,
                        "connection": {"type": "direct", "kubernetesAPIEndpoint": "https://10.96.0.1:443",
                                       "kubeconfig": base64::engine::general_purpose::STANDARD.encode("apiVersion: v1\nkind: Config\n")}}}),
    );
    let label = crd("cluster.kubesphere.io", "labels");
    p.cr(
        label,
        None,
        "region-dev",
        Role::Platform,
        Meta::new().finalizers(label.finalizers),
        json!({"spec": {"key": "region", "value": "dev", "backgroundColor": "#3385FF", "clusters": ["host"]}}),
    );
    p.cr(
        crd("gateway.kubesphere.io", "ingressclassscopes"),
        None,
        "nginx",
        Role::Platform,
        Meta::new(),
        json!({"spec": {"ingressClass": {"name": "nginx"}, "scope": {"namespaces": []}}}),
    );
    p.cr(
        crd("storage.kubesphere.io", "provisionercapabilities"),
        None,
        "kubernetes-io-no-provisioner",
        Role::Platform,
        Meta::new(),
        json!({"spec": {"pluginInfo": {"name": "kubernetes.io/no-provisioner"}, "features": {"volume": {"create": false}}}}),
    );
    p.cr(
        crd("storage.kubesphere.io", "storageclasscapabilities"),
        None,
        "local-path",
        Role::Platform,
        Meta::new(),
        json!({"spec": {"provisioner": "rancher.io/local-path", "features": {"volume": {"create": true, "expandMode": "UNKNOWN"}}}}),
    );
}

pub(crate) fn hook_leftovers(p: &mut Plan) {
    for name in ["ks-core-post-delete", "ks-core-post-delete-crd"] {
        let hook = || {
            Meta::new()
                .annotation("helm.sh/hook", "post-delete")
                .annotation("helm.sh/hook-weight", "-1")
                .annotation(
                    "helm.sh/hook-delete-policy",
                    "before-hook-creation,hook-succeeded",
                )
        };
        p.add(
            &typed::<ServiceAccount>(),
            Some("kubesphere-system"),
            name,
            Role::Platform,
            HELM_MANAGER,
            hook(),
            Value::Null,
        );
        p.add(
            &typed::<ClusterRoleBinding>(),
            None,
            name,
            Role::Platform,
            HELM_MANAGER,
            hook(),
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                   "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kubesphere-system"}]}),
        );
    }
}

/// One KubeSphere webhook configuration: (validating?, name, rules, failurePolicy, objectSelector).
struct Hook {
    validating: bool,
    name: &'static str,
    path: &'static str,
    rules: Value,
    fail: bool,
    object_selector: Option<Value>,
    timeout: Option<u32>,
}

fn rule(group: &str, version: &str, resources: &[&str], ops: &[&str]) -> Value {
    json!({"apiGroups": [group], "apiVersions": [version], "resources": resources, "operations": ops, "scope": "*"})
}

/// Every 4.x webhook of the fact sheet's section 4, each pointing at the deleted Service.
fn kubesphere_hooks() -> Vec<Hook> {
    let cu = &["CREATE", "UPDATE"][..];
    let config_selector =
        json!({"matchExpressions": [{"key": "config.kubesphere.io/type", "operator": "Exists"}]});
    let hook = |validating, name, path, rules, fail| Hook {
        validating,
        name,
        path,
        rules,
        fail,
        object_selector: None,
        timeout: None,
    };
    vec![
        hook(
            true,
            "validator.user.iam.kubesphere.io",
            "/validate-iam-kubesphere-io-v1beta1-user",
            json!([rule("iam.kubesphere.io", "v1beta1", &["users"], cu)]),
            false,
        ),
        hook(
            false,
            "defaulter.user.iam.kubesphere.io",
            "/mutate-iam-kubesphere-io-v1beta1-user",
            json!([rule("iam.kubesphere.io", "v1beta1", &["users"], cu)]),
            false,
        ),
        hook(
            false,
            "defaulter.installplan.kubesphere.io",
            "/mutate-kubesphere-io-v1alpha1-installplan",
            json!([rule("kubesphere.io", "v1alpha1", &["installplans"], cu)]),
            true,
        ),
        hook(
            true,
            "validator.installplan.kubesphere.io",
            "/validate-kubesphere-io-v1alpha1-installplan",
            json!([rule("kubesphere.io", "v1alpha1", &["installplans"], cu)]),
            true,
        ),
        hook(
            true,
            "resourcesquotas.quota.kubesphere.io",
            "/validate-quota-kubesphere-io-v1alpha2",
            json!([rule(
                "",
                "v1",
                &["pods", "persistentvolumeclaims", "services"],
                &["CREATE"]
            )]),
            false,
        ),
        hook(
            true,
            "extensions.kubesphere.io",
            "/validate-extensions-kubesphere-io-v1alpha1",
            json!([rule(
                "extensions.kubesphere.io",
                "v1alpha1",
                &[
                    "jsbundles",
                    "apiservices",
                    "reverseproxies",
                    "extensionentries"
                ],
                cu
            )]),
            true,
        ),
        Hook {
            object_selector: Some(config_selector.clone()),
            ..hook(
                true,
                "validator.config.kubesphere.io",
                "/validate--v1-secret",
                json!([rule("", "v1", &["secrets"], cu)]),
                false,
            )
        },
        Hook {
            object_selector: Some(
                json!({"matchLabels": {"kubesphere.io/protected-resource": "true"}}),
            ),
            ..hook(
                true,
                "protector.kubesphere.io",
                "/protect-resource",
                json!([
                    rule("", "v1", &["namespaces"], &["DELETE"]),
                    rule(
                        "tenant.kubesphere.io",
                        "*",
                        &["workspacetemplates"],
                        &["DELETE"]
                    )
                ]),
                false,
            )
        },
        hook(
            false,
            "extensions.kubesphere.io",
            "/mutate-extensions-kubesphere-io-v1alpha1-jsbundle",
            json!([rule(
                "extensions.kubesphere.io",
                "v1alpha1",
                &["jsbundles"],
                cu
            )]),
            true,
        ),
        Hook {
            timeout: Some(30),
            ..hook(
                false,
                "serviceaccount.kubesphere.io",
                "/serviceaccount-pod-injector",
                json!([rule("", "v1", &["pods"], &["CREATE"])]),
                false,
            )
        },
        Hook {
            object_selector: Some(config_selector),
            ..hook(
                false,
                "defaulter.config.kubesphere.io",
                "/mutate--v1-secret",
                json!([rule("", "v1", &["secrets"], cu)]),
                false,
            )
        },
        hook(
            true,
            "applications.kubesphere.io",
            "/validate-application-kubesphere-io-v2-applicationrelease",
            json!([rule(
                "application.kubesphere.io",
                "v2",
                &["applicationreleases"],
                cu
            )]),
            true,
        ),
    ]
}

pub(crate) fn webhooks(p: &mut Plan) {
    for h in kubesphere_hooks() {
        let (ns, svc) = WEBHOOK_SERVICE;
        let mut webhook = json!({
            "name": h.name,
            "clientConfig": {"service": {"namespace": ns, "name": svc, "path": h.path, "port": 443}},
            "rules": h.rules,
            "failurePolicy": if h.fail { "Fail" } else { "Ignore" },
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "matchPolicy": "Equivalent",
        });
        if let Some(sel) = h.object_selector {
            webhook["objectSelector"] = sel;
        }
        if let Some(t) = h.timeout {
            webhook["timeoutSeconds"] = t.into();
        }
        let ar = if h.validating {
            typed::<ValidatingWebhookConfiguration>()
        } else {
            typed::<MutatingWebhookConfiguration>()
        };
        let meta = Meta::new()
            .label("app.kubernetes.io/managed-by", "Helm")
            .annotation("meta.helm.sh/release-name", "ks-core")
            .annotation("meta.helm.sh/release-namespace", "kubesphere-system");
        p.add_staged(
            &ar,
            None,
            h.name,
            Role::Platform,
            HELM_MANAGER,
            meta,
            json!({"webhooks": [webhook]}),
            Stage::Last,
        );
    }
}

/// Names and failure policies (`true` = Fail) of the KubeSphere webhooks, validating first.
pub fn kubesphere_webhooks() -> Vec<(bool, &'static str, bool)> {
    kubesphere_hooks()
        .into_iter()
        .map(|h| (h.validating, h.name, h.fail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::Role;

    #[test]
    fn small_plan_holds_every_required_piece() {
        let p = plan(Scale::SMALL);
        let f = p.footprint(PROFILE, Scale::SMALL);
        assert_eq!(f.platform_crds().len(), 39);
        assert_eq!(f.system_namespaces(), SYSTEM_NAMESPACES);
        assert_eq!(
            f.of_kind("ValidatingWebhookConfiguration")
                .filter(|o| o.role == Role::Platform)
                .count(),
            7
        );
        assert_eq!(
            f.of_kind("MutatingWebhookConfiguration")
                .filter(|o| o.role == Role::Platform)
                .count(),
            5
        );
        for (kind, ns, name) in [
            ("WorkspaceTemplate", None, "system-workspace"),
            ("Workspace", None, "system-workspace"),
            ("User", None, "admin"),
            ("InstallPlan", None, EXTENSION),
            ("Repository", None, "extensions-museum"),
            ("Cluster", None, "host"),
            ("ClusterRoleBinding", None, "ks-core-post-delete"),
            ("ClusterRoleBinding", None, "ks-core-post-delete-crd"),
            ("ClusterRoleBinding", None, "admin-cluster-admin"),
            ("Secret", Some("kubesphere-system"), "kubeconfig-admin"),
            (
                "ServiceAccount",
                Some(EXTENSION_NAMESPACE),
                "helm-executor.whizard-monitoring",
            ),
            (
                "Secret",
                Some(EXTENSION_NAMESPACE),
                "sh.helm.release.v1.whizard-monitoring.v1",
            ),
            (
                "PersistentVolumeClaim",
                Some(EXTENSION_NAMESPACE),
                EXTENSION_CLAIM,
            ),
            ("APIService", None, EXTENSION_APISERVICE),
        ] {
            assert!(f.find(kind, ns, name).is_some(), "{kind} {ns:?} {name}");
        }
        let terminating: Vec<_> = f.terminating().map(|o| o.key.to_string()).collect();
        assert!(
            terminating.contains(&"User.iam.kubesphere.io admin".to_string()),
            "{terminating:?}"
        );
        assert!(
            f.terminating().all(|o| !o.finalizers.is_empty()),
            "only objects with finalizers can stay Terminating"
        );
        assert_eq!(
            f.user_namespaces()
                .iter()
                .filter(|n| n.starts_with("demo-workspace-project-"))
                .count(),
            2
        );
    }

    #[test]
    fn every_owner_is_seeded_before_its_dependents() {
        let p = plan(Scale::SMALL);
        for (i, item) in p.items.iter().enumerate() {
            for o in &item.owners {
                let pos = p.items.iter().position(|x| x.object.key == o.key);
                assert!(
                    pos.is_some_and(|pos| pos < i),
                    "{} owned by unseeded {}",
                    item.object.key,
                    o.key
                );
            }
        }
    }

    #[test]
    fn the_release_record_names_the_installplan_target() {
        let p = plan(Scale::SMALL);
        let secret = p
            .items
            .iter()
            .find(|i| i.object.key.name == "sh.helm.release.v1.whizard-monitoring.v1")
            .expect("release secret");
        let data = secret.manifest["stringData"]["release"]
            .as_str()
            .expect("release data");
        let release = Release::decode(data.as_bytes()).expect("decode");
        assert_eq!(release.namespace, EXTENSION_NAMESPACE);
        assert_eq!(release.info.status, "deployed");
        assert!(release.manifest.contains("kind: \"APIService\""));
        assert!(release.manifest.contains("kind: \"Gateway\""));
        assert_eq!(release.manifest.matches("---\n").count(), 8);
    }

    #[test]
    fn large_scale_is_about_ten_thousand_objects() {
        let n = plan(Scale::LARGE).items.len();
        assert!((9_000..=11_000).contains(&n), "{n}");
    }
}
