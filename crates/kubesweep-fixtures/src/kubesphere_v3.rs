//! The `kubesphere-v3` profile: what a KubeSphere 3.4 cluster (installed by ks-installer) holds
//! once its controllers are gone (fact sheet sections 3, 4, 6 and 9): the installer CRD and its
//! `ks-installer` ClusterConfiguration; a subset of the 3.x ks-core CRDs (iam, tenant, cluster,
//! network, quota, alerting) with instances carrying 3.x finalizers, some Terminating; the 3.x
//! platform namespaces; every namespace labelled `kubesphere.io/namespace` with the 3.x namespace
//! finalizer; a workspace whose project namespace is owned by its `v1alpha1` Workspace; 3.x
//! webhooks pointing at the deleted `ks-controller-manager`; 3.x RBAC leftovers; a shared
//! Prometheus Operator CRD that must stay. Foreign decoys come from [`crate::decoys`].
//!
//! The footprint is fixed: the scale only names the footprint, it does not grow it (the 4.x profile
//! is the one for volume).

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role as RbacRole};
use serde_json::{Value, json};

use crate::crds::{FOREIGN_CRDS, KUBESPHERE_V3_CRDS, SHARED_V3_CRDS, kubesphere_v3_crd as crd};
use crate::decoys;
use crate::footprint::{ObjectKey, Role};
use crate::plan::{HOOK_MANAGER, KS_MANAGER, Meta, Plan, Stage, USER_MANAGER, owner, typed};

/// Profile name on the command line.
pub const PROFILE: &str = "kubesphere-v3";
/// Namespaces ks-installer creates and a cleanup deletes.
pub const PLATFORM_NAMESPACES: &[&str] = &[
    "kubesphere-system",
    "kubesphere-controls-system",
    "kubesphere-monitoring-system",
    "kubesphere-logging-system",
];
/// Pre-existing namespaces that must survive; 3.x labels and finalizes them like any other.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// The user workspace.
pub const WORKSPACE: &str = "demo-workspace";
/// Its project: a user namespace the 3.x controller made an owned child of the Workspace.
pub const PROJECT: &str = "demo-project";
/// A user namespace outside any workspace: 3.x labelled and finalized it all the same.
pub const PLAIN_NAMESPACE: &str = "legacy-apps";
/// The shared CRD a cleanup keeps by default.
pub const SHARED_CRD: &str = "prometheusrules.monitoring.coreos.com";
/// The Service every 3.x KubeSphere webhook calls.
pub const WEBHOOK_SERVICE: (&str, &str) = ("kubesphere-system", "ks-controller-manager");

/// The 3.x namespace controller's finalizer, on every namespace.
const NS_FINALIZER: &str = "finalizers.kubesphere.io/namespaces";
const SYSTEM_WORKSPACE: &str = "system-workspace";

/// Builds the whole plan.
pub(crate) fn plan() -> Plan {
    let mut p = Plan::default();
    decoys::first(&mut p);
    for c in KUBESPHERE_V3_CRDS {
        p.crd(c, Role::Platform);
    }
    // Prometheus Operator's CRDs came with ks-installer's monitoring but are commonly shared.
    for c in SHARED_V3_CRDS {
        p.crd(c, Role::Foreign);
    }
    for c in FOREIGN_CRDS {
        p.crd(c, Role::Foreign);
    }
    namespaces(&mut p);
    installer(&mut p);
    iam(&mut p);
    workspace(&mut p, SYSTEM_WORKSPACE, true);
    let ws = workspace(&mut p, WORKSPACE, false);
    project(&mut p, &ws);
    cluster_objects(&mut p);
    rbac(&mut p);
    shared(&mut p);
    decoys::add(&mut p);
    webhooks(&mut p);
    p
}

fn ns_ar() -> kube::core::ApiResource {
    typed::<Namespace>()
}

/// What the 3.x namespace controller writes on every namespace.
fn ns_meta(name: &str) -> Meta {
    Meta::new()
        .label("kubesphere.io/namespace", name)
        .finalizer(NS_FINALIZER)
}

fn namespaces(p: &mut Plan) {
    for ns in PLATFORM_NAMESPACES {
        p.add(
            &ns_ar(),
            None,
            ns,
            Role::Platform,
            HOOK_MANAGER,
            ns_meta(ns).label("kubesphere.io/workspace", SYSTEM_WORKSPACE),
            Value::Null,
        );
    }
    for ns in SYSTEM_NAMESPACES {
        let mut kubesphere = ns_meta(ns);
        // ks-installer put the system namespaces into the system workspace, all but the lease one.
        if *ns != "kube-node-lease" {
            kubesphere = kubesphere.label("kubesphere.io/workspace", SYSTEM_WORKSPACE);
        }
        let foreign = Meta::new()
            .label("acme.example.com/team", "platform")
            .annotation("acme.example.com/owner", "ops")
            .finalizer("acme.example.com/keep");
        p.system_namespace(ns, kubesphere, foreign);
    }
    // Outside any workspace, still labelled and finalized by 3.x, with a foreign finalizer beside.
    p.add(
        &ns_ar(),
        None,
        PLAIN_NAMESPACE,
        Role::User,
        USER_MANAGER,
        ns_meta(PLAIN_NAMESPACE)
            .label("team", "legacy")
            .finalizer("acme.example.com/keep"),
        Value::Null,
    );
    p.add(
        &typed::<ConfigMap>(),
        Some(PLAIN_NAMESPACE),
        "settings",
        Role::User,
        USER_MANAGER,
        Meta::new().label("app", "legacy"),
        json!({"data": {"mode": "production"}}),
    );
    // The decoy namespaces of `decoys` (acme-system, acme-apps) are left without the 3.x keys: a
    // Foreign object must come out byte-identical, and a real 3.x cluster would have labelled them.
}

fn installer(p: &mut Plan) {
    p.cr(
        crd("installer.kubesphere.io", "clusterconfigurations"),
        Some("kubesphere-system"),
        "ks-installer",
        Role::Platform,
        Meta::new().label("version", "v3.4.1"),
        json!({"spec": {
            "persistence": {"storageClass": ""},
            "authentication": {"jwtSecret": ""},
            "monitoring": {"storageClass": ""},
            "alerting": {"enabled": true},
            "logging": {"enabled": true},
            "multicluster": {"clusterRole": "none"},
            "network": {"ippool": {"type": "calico"}}
        },
        "status": {"core": {"status": "enabled", "version": "v3.4.1"}}}),
    );
    p.add(
        &typed::<ServiceAccount>(),
        Some("kubesphere-system"),
        "ks-installer",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("app", "ks-installer"),
        Value::Null,
    );
    p.add(
        &typed::<ServiceAccount>(),
        Some("kubesphere-system"),
        "kubesphere",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("app", "kubesphere"),
        Value::Null,
    );
    p.add(
        &typed::<Secret>(),
        Some("kubesphere-system"),
        "kubeconfig-admin",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("kubesphere.io/user-ref", "admin"),
        json!({"type": "config.kubesphere.io/kubeconfig",
               "stringData": {"config": "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"}}),
    );
}

fn add_user(p: &mut Plan, name: &str, global_role: &str, terminating: bool) {
    let users = crd("iam.kubesphere.io", "users");
    let mut meta = Meta::new()
        .annotation("iam.kubesphere.io/globalrole", global_role)
        .annotation("kubesphere.io/creator", "admin")
        .finalizers(users.finalizers);
    if terminating {
        meta = meta.terminating();
    }
    p.cr(
        users,
        None,
        name,
        Role::Platform,
        meta,
        json!({"spec": {"email": format!("{name}@kubesphere.io"), "lang": "en"},
               "status": {"state": "Active"}}),
    );
    p.cr(
        crd("iam.kubesphere.io", "globalrolebindings"),
        None,
        &format!("{name}-{global_role}"),
        Role::Platform,
        Meta::new()
            .label("iam.kubesphere.io/user-ref", name)
            .label("iam.kubesphere.io/role-ref", global_role),
        json!({"roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "GlobalRole", "name": global_role},
               "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": name}]}),
    );
}

fn iam(p: &mut Plan) {
    let gr = crd("iam.kubesphere.io", "globalroles");
    for name in ["platform-admin", "platform-regular", "workspaces-manager"] {
        p.cr(
            gr,
            None,
            name,
            Role::Platform,
            Meta::new().annotation("kubesphere.io/creator", "system"),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        );
    }
    // 3.x role templates are GlobalRoles labelled as such.
    p.cr(
        gr,
        None,
        "role-template-view-users",
        Role::Platform,
        Meta::new().label("iam.kubesphere.io/role-template", "true"),
        json!({"rules": [{"apiGroups": ["iam.kubesphere.io"], "resources": ["users"], "verbs": ["get", "list"]}]}),
    );
    // The admin the uninstall script could not delete: its finalizer holds it Terminating.
    add_user(p, "admin", "platform-admin", true);
    add_user(p, "demo-user", "platform-regular", false);
}

/// A WorkspaceTemplate (v1alpha2) and the Workspace (v1alpha1) the 3.x controller made from it.
fn workspace(p: &mut Plan, name: &str, system: bool) -> ObjectKey {
    let wst = crd("tenant.kubesphere.io", "workspacetemplates");
    let mut meta = Meta::new()
        .annotation("kubesphere.io/creator", "admin")
        .finalizers(wst.finalizers);
    if system {
        meta = meta.terminating();
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
    let key = p.cr(
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
    );
    if !system {
        let wsr = crd("iam.kubesphere.io", "workspaceroles");
        let role = format!("{name}-admin");
        p.cr(
            wsr,
            None,
            &role,
            Role::Platform,
            Meta::new().label("kubesphere.io/workspace", name),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        );
        p.cr(
            crd("iam.kubesphere.io", "workspacerolebindings"),
            None,
            &format!("demo-user-{role}"),
            Role::Platform,
            Meta::new()
                .label("kubesphere.io/workspace", name)
                .label("iam.kubesphere.io/user-ref", "demo-user"),
            json!({"roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "WorkspaceRole", "name": role},
                   "subjects": [{"apiGroup": "iam.kubesphere.io", "kind": "User", "name": "demo-user"}]}),
        );
        p.cr(
            crd("quota.kubesphere.io", "resourcequotas"),
            None,
            name,
            Role::Platform,
            Meta::new().label("kubesphere.io/workspace", name),
            json!({"spec": {"selector": {"kubesphere.io/workspace": name},
                            "quota": {"hard": {"limits.cpu": "8", "limits.memory": "16Gi"}}}}),
        );
    }
    key
}

/// The project: the 3.x controller's ownerReference to the v1alpha1 Workspace (with
/// blockOwnerDeletion: the garbage collector deletes the namespace with its workspace,
/// kubesphere#3772), its label and finalizer, another vendor's keys beside them, user data inside.
fn project(p: &mut Plan, ws: &ObjectKey) {
    let meta = ns_meta(PROJECT)
        .label("kubesphere.io/workspace", WORKSPACE)
        .label("team", "demo")
        .annotation("kubesphere.io/creator", "admin")
        .annotation("kubesphere.io/alias-name", "Demo project")
        .annotation("acme.example.com/cost-center", "42")
        .finalizer("acme.example.com/keep")
        .owner(owner(ws, Some("tenant.kubesphere.io/v1alpha1"), true, true));
    p.add(
        &ns_ar(),
        None,
        PROJECT,
        Role::User,
        KS_MANAGER,
        meta,
        Value::Null,
    );
    p.add(
        &typed::<ConfigMap>(),
        Some(PROJECT),
        "app-config",
        Role::User,
        USER_MANAGER,
        Meta::new().label("app", "demo"),
        json!({"data": {"settings.yaml": "feature: on\n"}}),
    );
    p.add(
        &typed::<Secret>(),
        Some(PROJECT),
        "app-secret",
        Role::User,
        USER_MANAGER,
        Meta::new().label("app", "demo"),
        json!({"type": "Opaque", "stringData": {"password": "s3cret"}}),
    );
    p.add(
        &typed::<Deployment>(),
        Some(PROJECT),
        "app",
        Role::User,
        USER_MANAGER,
        Meta::new().label("app", "demo"),
        // Zero replicas: the test control plane has no scheduler; the Deployment settles anyway.
        json!({"spec": {"replicas": 0, "selector": {"matchLabels": {"app": "demo"}},
                        "template": {"metadata": {"labels": {"app": "demo"}},
                                     "spec": {"containers": [{"name": "app", "image": "registry.example.com/demo/app:1.0"}]}}}}),
    );
    // An alerting rule group of the project: KubeSphere's, although it lives in a user namespace.
    p.cr(
        crd("alerting.kubesphere.io", "rulegroups"),
        Some(PROJECT),
        "demo-alerts",
        Role::Platform,
        Meta::new().label("alerting.kubesphere.io/enable", "true"),
        json!({"spec": {"rules": [{"alert": "HighErrorRate", "expr": "rate(errors[5m]) > 1", "for": "5m"}]}}),
    );
    // The project roles 3.x aggregates from role templates (fact sheet section 6): proven
    // KubeSphere's by the aggregation annotation only KubeSphere writes.
    for (name, templates) in [
        ("admin", "[\"role-template-manage-members\"]"),
        ("operator", "[\"role-template-view-members\"]"),
    ] {
        p.add(
            &typed::<RbacRole>(),
            Some(PROJECT),
            name,
            Role::Platform,
            KS_MANAGER,
            Meta::new()
                .annotation("iam.kubesphere.io/aggregation-roles", templates)
                .annotation("kubesphere.io/creator", "system"),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]}),
        );
    }
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
            .finalizers(cluster.finalizers)
            .terminating(),
        json!({"spec": {"provider": "kubesphere", "enable": true, "joinFederation": false,
                        "connection": {"type": "direct", "kubernetesAPIEndpoint": "https://10.96.0.1:443"}}}),
    );
    let ippool = crd("network.kubesphere.io", "ippools");
    p.cr(
        ippool,
        None,
        "default-ipv4-ippool",
        Role::Platform,
        Meta::new().finalizers(ippool.finalizers),
        json!({"spec": {"type": "calico", "cidr": "10.233.64.0/18", "blockSize": 26}}),
    );
}

fn rbac(p: &mut Plan) {
    let read = json!({"rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}]});
    p.add(
        &typed::<ClusterRole>(),
        None,
        "role-template-view-members",
        Role::Platform,
        KS_MANAGER,
        Meta::new().label("iam.kubesphere.io/role-template", "true"),
        read.clone(),
    );
    p.add(
        &typed::<ClusterRole>(),
        None,
        "system:kubesphere-router-clusterrole",
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        json!({"rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]}]}),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "system:kubesphere-cluster-admin",
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "kubesphere", "namespace": "kubesphere-system"}]}),
    );
    p.add(
        &typed::<ClusterRole>(),
        None,
        "ks-installer",
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    );
    p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "ks-installer",
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ks-installer"},
               "subjects": [{"kind": "ServiceAccount", "name": "ks-installer", "namespace": "kubesphere-system"}]}),
    );
}

/// The shared Prometheus Operator CRD: KubeSphere's rules live in its monitoring namespace (and go
/// with it), another vendor's rule must stay with the CRD.
fn shared(p: &mut Plan) {
    let rules = crd("monitoring.coreos.com", "prometheusrules");
    let body = json!({"spec": {"groups": [{"name": "general", "rules": [{"alert": "Watchdog", "expr": "vector(1)"}]}]}});
    p.cr(
        rules,
        Some("kubesphere-monitoring-system"),
        "prometheus-k8s-rules",
        Role::Platform,
        Meta::new().label("prometheus", "k8s"),
        body.clone(),
    );
    p.cr(
        rules,
        Some(decoys::ACME_APPS),
        "acme-rules",
        Role::Foreign,
        Meta::new().label("app.kubernetes.io/managed-by", "acme-operator"),
        body,
    );
}

/// The 3.x webhooks of the fact sheet's section 4 that guard the seeded kinds: (name, rules, Fail?).
fn hooks() -> Vec<(&'static str, Value, bool)> {
    let rule = |group: &str, version: &str, resource: &str, ops: &[&str]| {
        json!([{"apiGroups": [group], "apiVersions": [version], "resources": [resource],
                "operations": ops, "scope": "*"}])
    };
    vec![
        (
            "users.iam.kubesphere.io",
            rule(
                "iam.kubesphere.io",
                "v1alpha2",
                "users",
                &["CREATE", "UPDATE"],
            ),
            true,
        ),
        (
            "network.kubesphere.io",
            rule(
                "network.kubesphere.io",
                "v1alpha1",
                "ippools",
                &["CREATE", "UPDATE", "DELETE"],
            ),
            true,
        ),
        (
            "cluster.kubesphere.io",
            rule("cluster.kubesphere.io", "v1alpha1", "clusters", &["UPDATE"]),
            true,
        ),
        (
            "storageclass-accessor.storage.kubesphere.io",
            rule(
                "",
                "v1",
                "persistentvolumeclaims",
                &["CREATE", "UPDATE", "DELETE"],
            ),
            false,
        ),
    ]
}

fn webhooks(p: &mut Plan) {
    let (ns, svc) = WEBHOOK_SERVICE;
    for (name, rules, fail) in hooks() {
        let webhook = json!({
            "name": name,
            "clientConfig": {"service": {"namespace": ns, "name": svc, "path": format!("/validate-{name}"), "port": 443}},
            "rules": rules,
            "failurePolicy": if fail { "Fail" } else { "Ignore" },
            "sideEffects": "None",
            "admissionReviewVersions": ["v1beta1"],
        });
        p.add_staged(
            &typed::<ValidatingWebhookConfiguration>(),
            None,
            name,
            Role::Platform,
            KS_MANAGER,
            Meta::new(),
            json!({"webhooks": [webhook]}),
            Stage::Last,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Scale;

    #[test]
    fn plan_holds_the_3x_pieces_with_their_roles() {
        let f = plan().footprint(PROFILE, Scale::SMALL);
        assert_eq!(f.system_namespaces(), SYSTEM_NAMESPACES);
        for ns in PLATFORM_NAMESPACES {
            assert!(f.platform_namespaces().contains(ns), "{ns}");
        }
        assert!(
            f.platform_crds()
                .contains(&"clusterconfigurations.installer.kubesphere.io")
        );
        assert!(f.foreign_crds().contains(&SHARED_CRD));
        for (kind, ns, name, role) in [
            (
                "ClusterConfiguration",
                Some("kubesphere-system"),
                "ks-installer",
                Role::Platform,
            ),
            ("Workspace", None, WORKSPACE, Role::Platform),
            ("Namespace", None, PROJECT, Role::User),
            (
                "PrometheusRule",
                Some(decoys::ACME_APPS),
                "acme-rules",
                Role::Foreign,
            ),
            (
                "ValidatingWebhookConfiguration",
                None,
                "users.iam.kubesphere.io",
                Role::Platform,
            ),
            (
                "ClusterRoleBinding",
                None,
                "system:kubesphere-cluster-admin",
                Role::Platform,
            ),
        ] {
            let o = f.find(kind, ns, name);
            assert_eq!(o.map(|o| o.role), Some(role), "{kind} {ns:?} {name}");
        }
        assert!(f.terminating().count() >= 3);
        assert!(f.terminating().all(|o| !o.finalizers.is_empty()));
    }

    #[test]
    fn every_namespace_but_the_decoys_carries_the_3x_keys() {
        let p = plan();
        for item in p.items.iter().filter(|i| i.object.key.kind == "Namespace") {
            if item.object.role == Role::Foreign {
                continue;
            }
            let name = &item.object.key.name;
            assert_eq!(
                item.manifest["metadata"]["labels"]["kubesphere.io/namespace"],
                *name
            );
            assert!(
                item.object.finalizers.iter().any(|f| f == NS_FINALIZER),
                "{name}"
            );
        }
    }

    #[test]
    fn owners_come_first_and_webhooks_last() {
        let p = plan();
        for (i, item) in p.items.iter().enumerate() {
            for o in &item.owners {
                let pos = p.items.iter().position(|x| x.object.key == o.key);
                assert!(pos.is_some_and(|pos| pos < i), "{}", item.object.key);
            }
            if item.object.key.kind.ends_with("WebhookConfiguration") {
                assert_eq!(item.stage, Stage::Last, "{}", item.object.key);
            }
        }
    }
}
