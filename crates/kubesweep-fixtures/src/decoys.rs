//! Foreign decoys: objects that look like KubeSphere's or sit next to them and must come out of any
//! KubeSphere cleanup byte-identical. Each one guards against a known hazard of the vendor scripts
//! (fact sheet section 1 and 9): groups matched without a dot boundary, names containing
//! "kubesphere", the `kubesphere.io/managed=true` label on customer objects (kubesphere#6361),
//! other software's finalizers, webhooks and APIServices.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role as RbacRole};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};

use crate::crds::kubesphere_crd as crd;
use crate::footprint::Role;
use crate::plan::{FOREIGN_MANAGER, Meta, Plan, Stage, USER_MANAGER, typed};

/// The vendor's system namespace: holds the Service its webhooks call.
pub const ACME_SYSTEM: &str = "acme-system";
/// A user namespace outside any workspace.
pub const ACME_APPS: &str = "acme-apps";
/// The foreign APIService (Local: see [`first`]).
pub const ACME_APISERVICE: &str = "v1.acme.example.com";

fn acme() -> Meta {
    Meta::new().label("app.kubernetes.io/managed-by", "acme-operator")
}

/// Decoys written before the CRDs.
///
/// The foreign aggregated APIService must never break discovery (an unavailable one blocks every
/// namespace deletion in the cluster, and the test control plane runs no pods that could serve it).
/// So it is a *Local* APIService (no `spec.service`: served by kube-apiserver itself) for the group
/// version of the vendor's CRD, `acme.example.com/v1`: always Available, and a realistic object an
/// operator writes to raise its group's discovery priority. It is written before the CRD because
/// kube-apiserver's CRD autoregistration leaves an APIService alone when it exists without the
/// `kube-aggregator.kubernetes.io/automanaged` label, while it would claim one created after the CRD.
pub(crate) fn first(p: &mut Plan) {
    p.add_staged(
        &typed::<APIService>(),
        None,
        ACME_APISERVICE,
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        json!({"spec": {"group": "acme.example.com", "version": "v1", "groupPriorityMinimum": 2000, "versionPriority": 20}}),
        Stage::First,
    );
}

/// The remaining decoys.
pub(crate) fn add(p: &mut Plan) {
    let ns = typed::<Namespace>();
    p.add(
        &ns,
        None,
        ACME_SYSTEM,
        Role::Foreign,
        FOREIGN_MANAGER,
        acme().label("acme.example.com/team", "platform"),
        Value::Null,
    );
    p.add(
        &ns,
        None,
        ACME_APPS,
        Role::Foreign,
        USER_MANAGER,
        Meta::new()
            .label("team", "apps")
            .annotation("acme.example.com/owner", "apps")
            .finalizer("acme.example.com/keep"),
        Value::Null,
    );

    // The vendor's webhook Service: exists, selects nothing, so it has no endpoints.
    p.add(
        &typed::<Service>(),
        Some(ACME_SYSTEM),
        "acme-webhook",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        json!({"spec": {"selector": {"app": "acme-webhook"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
    );
    p.add(
        &typed::<ServiceAccount>(),
        Some(ACME_SYSTEM),
        "acme-operator",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        Value::Null,
    );
    p.add(
        &typed::<ConfigMap>(),
        Some(ACME_SYSTEM),
        "acme-config",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        json!({"data": {"mode": "strict"}}),
    );

    // User data outside any workspace, including the #6361 hazard: customer objects labelled
    // `kubesphere.io/managed=true`.
    p.add(
        &typed::<ConfigMap>(),
        Some(ACME_APPS),
        "settings",
        Role::Foreign,
        USER_MANAGER,
        Meta::new(),
        json!({"data": {"a": "1"}}),
    );
    p.add(
        &typed::<Secret>(),
        Some(ACME_APPS),
        "db-credentials",
        Role::Foreign,
        USER_MANAGER,
        Meta::new(),
        json!({"type": "Opaque", "stringData": {"password": "hunter2"}}),
    );
    p.add(
        &typed::<ServiceAccount>(),
        Some(ACME_APPS),
        "builder",
        Role::Foreign,
        USER_MANAGER,
        Meta::new(),
        Value::Null,
    );
    p.add(
        &typed::<Deployment>(),
        Some(ACME_APPS),
        "web",
        Role::Foreign,
        USER_MANAGER,
        Meta::new().label("app", "web"),
        json!({"spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:2"}]}}}}),
    );
    p.add(
        &typed::<ConfigMap>(),
        Some(ACME_APPS),
        "managed-by-customer",
        Role::Foreign,
        USER_MANAGER,
        Meta::new().label("kubesphere.io/managed", "true"),
        json!({"data": {"why": "a customer label that happens to match KubeSphere's"}}),
    );
    p.add(
        &typed::<RbacRole>(),
        Some(ACME_APPS),
        "deployer",
        Role::Foreign,
        USER_MANAGER,
        Meta::new().label("kubesphere.io/managed", "true"),
        json!({"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]}),
    );

    // Custom resources with their own finalizers, in look-alike groups too.
    let protect = "acme.example.com/protect";
    p.cr(
        crd("acme.example.com", "widgets"),
        Some(ACME_APPS),
        "widget-1",
        Role::Foreign,
        Meta::new().finalizer(protect),
        json!({"spec": {"size": 1}}),
    );
    p.cr(
        crd("acme.example.com", "gadgets"),
        None,
        "gadget-1",
        Role::Foreign,
        acme().finalizer(protect),
        json!({"spec": {"colour": "blue"}}),
    );
    p.cr(
        crd("notkubesphere.io", "workspaces"),
        None,
        "demo-workspace",
        Role::Foreign,
        Meta::new().finalizer("notkubesphere.io/cleanup"),
        json!({"spec": {"owner": "someone-else"}}),
    );
    p.cr(
        crd("kubesphere.io.example.com", "users"),
        Some(ACME_APPS),
        "admin",
        Role::Foreign,
        Meta::new().finalizer("kubesphere.io.example.com/guard"),
        json!({"spec": {"email": "admin@example.com"}}),
    );

    // RBAC whose names look like KubeSphere's.
    let exporter = "acme-kubesphere-exporter";
    p.add(
        &typed::<ClusterRole>(),
        None,
        exporter,
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        json!({"rules": [{"apiGroups": ["iam.kubesphere.io"], "resources": ["users"], "verbs": ["get", "list", "watch"]}]}),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        exporter,
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": exporter},
               "subjects": [{"kind": "ServiceAccount", "name": "acme-operator", "namespace": ACME_SYSTEM}]}),
    );
    p.add(
        &typed::<ClusterRole>(),
        None,
        "acme-ops-reader",
        Role::Foreign,
        FOREIGN_MANAGER,
        Meta::new().label("kubesphere.io/managed", "true"),
        json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    );
    // Named like KubeSphere's `<user>-cluster-admin`, but `ops` is no KubeSphere user.
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "ops-cluster-admin",
        Role::Foreign,
        FOREIGN_MANAGER,
        Meta::new(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}]}),
    );

    // Webhooks owned by the vendor (their Service is in its namespace), one of them matching
    // KubeSphere's resources and named after it: ownership is the service reference, not the name.
    let webhook = |name: &str, path: &str, rules: Value| {
        json!({"webhooks": [{
            "name": name,
            "clientConfig": {"service": {"namespace": ACME_SYSTEM, "name": "acme-webhook", "path": path, "port": 443}},
            "rules": rules,
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5
        }]})
    };
    let widgets = json!([{"apiGroups": ["acme.example.com"], "apiVersions": ["v1"], "resources": ["widgets"],
                          "operations": ["CREATE", "UPDATE"], "scope": "*"}]);
    p.add_staged(
        &typed::<ValidatingWebhookConfiguration>(),
        None,
        "acme-policy",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        webhook(
            "validate.widgets.acme.example.com",
            "/validate",
            widgets.clone(),
        ),
        Stage::Last,
    );
    p.add_staged(
        &typed::<MutatingWebhookConfiguration>(),
        None,
        "acme-defaults",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        webhook("default.widgets.acme.example.com", "/mutate", widgets),
        Stage::Last,
    );
    p.add_staged(
        &typed::<ValidatingWebhookConfiguration>(),
        None,
        "acme-kubesphere-compat",
        Role::Foreign,
        FOREIGN_MANAGER,
        acme(),
        webhook(
            "compat.kubesphere.acme.example.com",
            "/compat",
            json!([{"apiGroups": ["iam.kubesphere.io"], "apiVersions": ["*"], "resources": ["users"],
                    "operations": ["CREATE"], "scope": "*"}]),
        ),
        Stage::Last,
    );
}
