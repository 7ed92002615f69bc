//! Test helpers: small builders for inventories, and one inventory that
//! looks like a KubeSphere 4.x cluster with decoys next to every platform
//! object (foreign CRDs, finalizers, labels, webhooks, RBAC).

use crate::inventory::{
    ClusterIdentity, CrdInventory, DiscoveryIssue, Inventory, NamespaceContent, ObservedList,
};
use crate::resource::ResourceType;
use kube::api::DynamicObject;
use serde_json::{Value, json};

/// An object with a deterministic UID (`uid-<name>` or `uid-<ns>-<name>`)
/// and resourceVersion `1`; `extra` is merged at the top level (metadata
/// keys go under `metadata`).
pub(crate) fn obj(
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    extra: Value,
) -> DynamicObject {
    let uid = match ns {
        Some(ns) => format!("uid-{ns}-{name}"),
        None => format!("uid-{name}"),
    };
    let mut value = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "uid": uid, "resourceVersion": "1"},
    });
    if let Some(ns) = ns {
        value["metadata"]["namespace"] = json!(ns);
    }
    if let Value::Object(map) = extra {
        for (k, v) in map {
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    for (mk, mv) in meta {
                        value["metadata"][mk] = mv;
                    }
                }
            } else {
                value[k] = v;
            }
        }
    }
    serde_json::from_value(value).expect("test object")
}

pub(crate) fn namespace(name: &str, extra: Value) -> DynamicObject {
    obj("v1", "Namespace", None, name, extra)
}

pub(crate) fn rt(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
    }
}

/// A CRD with its instances; `extra_spec` is merged into `spec`.
pub(crate) fn crd(
    resource: ResourceType,
    instances: Vec<DynamicObject>,
    extra_spec: Value,
) -> CrdInventory {
    let name = resource.qualified_plural();
    let mut spec = json!({
        "group": resource.group,
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "names": {"kind": resource.kind, "plural": resource.plural},
    });
    if let Value::Object(map) = extra_spec {
        for (k, v) in map {
            spec[k] = v;
        }
    }
    CrdInventory {
        crd: obj(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            &name,
            json!({"spec": spec, "status": {"storedVersions": [resource.version]}}),
        ),
        resource: Some(resource),
        instances,
        instances_listed: true,
    }
}

fn webhook(api: &str, kind: &str, name: &str, services: &[(&str, &str)]) -> DynamicObject {
    let hooks: Vec<Value> = services
        .iter()
        .enumerate()
        .map(|(i, (ns, svc))| {
            json!({"name": format!("hook{i}.{name}"),
                   "clientConfig": {"service": {"namespace": ns, "name": svc, "port": 443}}})
        })
        .collect();
    obj(api, kind, None, name, json!({"webhooks": hooks}))
}

const WS_OWNER: &str = "tenant.kubesphere.io/v1alpha1";

/// A KubeSphere 4.x-like cluster with decoys.
pub(crate) fn kubesphere_inventory() -> Inventory {
    let system_labels = json!({
        "kubesphere.io/workspace": "system-workspace",
        "kubesphere.io/managed": "true",
        "kubesphere.io/protected-resource": "true",
        "team": "platform",
    });
    let namespaces = vec![
        namespace(
            "default",
            json!({"metadata": {
                "labels": system_labels,
                "annotations": {"cluster.kubesphere.io/name": "host", "acme.example.com/owner": "ops"},
                "finalizers": ["kubesphere.io/cascading-deletion", "acme.example.com/keep"],
            }}),
        ),
        namespace(
            "kube-system",
            json!({"metadata": {"labels": system_labels}}),
        ),
        namespace("kube-public", json!({})),
        namespace(
            "kubesphere-system",
            json!({"metadata": {"labels": system_labels,
                                "finalizers": ["kubesphere.io/cascading-deletion"]}}),
        ),
        namespace(
            "kubesphere-controls-system",
            json!({
                "metadata": {"labels": system_labels, "deletionTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Terminating", "conditions": [
                    {"type": "NamespaceContentRemaining", "status": "True",
                     "message": "users.iam.kubesphere.io has 1 resource instances"},
                    {"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "message": ""},
                ]},
            }),
        ),
        namespace(
            "extension-whizard",
            json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "whizard"}}}),
        ),
        namespace("extension-custom", json!({})),
        namespace("my-ext-ns", json!({})),
        // Named only by a member cluster's scheduling status: not this cluster's.
        namespace("member-ns", json!({})),
        namespace(
            "project-a",
            json!({"metadata": {
                "labels": {"kubesphere.io/workspace": "ws1", "kubesphere.io/managed": "true", "app": "shop"},
                "annotations": {"kubesphere.io/creator": "admin"},
                "finalizers": ["finalizers.kubesphere.io/namespaces", "acme.example.com/keep"],
                "ownerReferences": [
                    {"apiVersion": WS_OWNER, "kind": "Workspace", "name": "ws1", "uid": "uid-ws1",
                     "controller": true, "blockOwnerDeletion": true},
                    {"apiVersion": "acme.example.com/v1", "kind": "Team", "name": "t", "uid": "uid-team"},
                ],
            }}),
        ),
        namespace(
            "notkubesphere",
            json!({"metadata": {"labels": {"notkubesphere.io/workspace": "x"},
                                "finalizers": ["notkubesphere.io/keep"]}}),
        ),
    ];

    let workspaces = rt(
        "tenant.kubesphere.io",
        "v1beta1",
        "Workspace",
        "workspaces",
        false,
    );
    let users = rt("iam.kubesphere.io", "v1beta1", "User", "users", false);
    let installplans = rt(
        "kubesphere.io",
        "v1alpha1",
        "InstallPlan",
        "installplans",
        false,
    );
    let apps = rt("app.k8s.io", "v1beta1", "Application", "applications", true);
    let widgets = rt("notkubesphere.io", "v1", "Widget", "widgets", false);
    let things = rt("kubesphere.io.example.com", "v1", "Thing", "things", false);
    let crds = vec![
        crd(
            workspaces.clone(),
            vec![obj(
                "tenant.kubesphere.io/v1beta1",
                "Workspace",
                None,
                "ws1",
                json!({"metadata": {"finalizers": ["kubesphere.io/cascading-deletion"]}}),
            )],
            json!({}),
        ),
        crd(
            users.clone(),
            vec![obj(
                "iam.kubesphere.io/v1beta1",
                "User",
                None,
                "admin",
                json!({"metadata": {"finalizers": ["finalizers.kubesphere.io/users", "acme.example.com/audit"]}}),
            )],
            json!({"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {
                "service": {"namespace": "kubesphere-system", "name": "ks-controller-manager"}}}}}),
        ),
        crd(
            installplans.clone(),
            vec![
                obj(
                    "kubesphere.io/v1alpha1",
                    "InstallPlan",
                    None,
                    "whizard",
                    json!({"metadata": {"finalizers": ["kubesphere.io/installplan-protection"]},
                       "status": {"state": "Installed", "targetNamespace": "extension-whizard",
                                  "clusterSchedulingStatuses": {"member1": {"targetNamespace": "member-ns"}}}}),
                ),
                obj(
                    "kubesphere.io/v1alpha1",
                    "InstallPlan",
                    None,
                    "my-ext",
                    json!({"status": {"state": "Installed", "targetNamespace": "my-ext-ns"}}),
                ),
            ],
            json!({}),
        ),
        crd(
            apps.clone(),
            vec![
                obj(
                    "app.k8s.io/v1beta1",
                    "Application",
                    Some("kubesphere-system"),
                    "console",
                    json!({}),
                ),
                obj(
                    "app.k8s.io/v1beta1",
                    "Application",
                    Some("project-a"),
                    "ks-app",
                    json!({"metadata": {"labels": {"kubesphere.io/extension-ref": "whizard"}}}),
                ),
                obj(
                    "app.k8s.io/v1beta1",
                    "Application",
                    Some("project-a"),
                    "their-app",
                    json!({}),
                ),
            ],
            json!({}),
        ),
        crd(
            widgets.clone(),
            vec![obj("notkubesphere.io/v1", "Widget", None, "w", json!({}))],
            json!({}),
        ),
        crd(things, vec![], json!({})),
    ];

    let vwc = "admissionregistration.k8s.io/v1";
    let validating_webhooks = vec![
        webhook(
            vwc,
            "ValidatingWebhookConfiguration",
            "users.iam.kubesphere.io",
            &[],
        ),
        webhook(
            vwc,
            "ValidatingWebhookConfiguration",
            "resourcesquotas.quota.kubesphere.io",
            &[("kubesphere-system", "ks-controller-manager")],
        ),
        webhook(
            vwc,
            "ValidatingWebhookConfiguration",
            "ext-validator",
            &[("extension-whizard", "whizard-webhook")],
        ),
        webhook(
            vwc,
            "ValidatingWebhookConfiguration",
            "acme-validator",
            &[("acme", "acme-webhook")],
        ),
        webhook(
            vwc,
            "ValidatingWebhookConfiguration",
            "mixed-hooks",
            &[
                ("kubesphere-system", "ks-controller-manager"),
                ("acme", "acme-webhook"),
            ],
        ),
    ];
    let mutating_webhooks = vec![
        webhook(
            vwc,
            "MutatingWebhookConfiguration",
            "serviceaccount.kubesphere.io",
            &[("kubesphere-system", "ks-controller-manager")],
        ),
        webhook(
            vwc,
            "MutatingWebhookConfiguration",
            "acme-mutator",
            &[("acme", "acme-webhook")],
        ),
    ];

    let apis = "apiregistration.k8s.io/v1";
    let api_services = vec![
        obj(
            apis,
            "APIService",
            None,
            "v1beta1.metrics.k8s.io",
            json!({"spec": {"group": "metrics.k8s.io", "service": {"namespace": "kube-system", "name": "metrics-server"}}}),
        ),
        obj(
            apis,
            "APIService",
            None,
            "v1alpha1.whizard.example.com",
            json!({"spec": {"group": "whizard.example.com", "service": {"namespace": "extension-whizard", "name": "api"}}}),
        ),
        obj(
            apis,
            "APIService",
            None,
            "v1beta1.iam.kubesphere.io",
            json!({"spec": {"group": "iam.kubesphere.io", "service": null}}),
        ),
        obj(
            apis,
            "APIService",
            None,
            "v1.acme.io",
            json!({"spec": {"group": "acme.io", "service": {"namespace": "acme", "name": "acme-api"}},
                   "status": {"conditions": [{"type": "Available", "status": "False"}]}}),
        ),
    ];

    let rbac = "rbac.authorization.k8s.io/v1";
    let user_owner = json!([{"apiVersion": "iam.kubesphere.io/v1beta1", "kind": "User", "name": "admin", "uid": "uid-admin"}]);
    let cluster_roles = vec![
        obj(
            rbac,
            "ClusterRole",
            None,
            "kubesphere:iam:platform-admin",
            json!({}),
        ),
        obj(
            rbac,
            "ClusterRole",
            None,
            "kubesphere:whizard:helm-executor",
            json!({}),
        ),
        obj(
            rbac,
            "ClusterRole",
            None,
            "acme-kubesphere-exporter",
            json!({}),
        ),
        obj(
            rbac,
            "ClusterRole",
            None,
            "customer-role",
            json!({"metadata": {"labels": {"kubesphere.io/managed": "true"}}}),
        ),
        obj(rbac, "ClusterRole", None, "cluster-admin", json!({})),
        obj(
            rbac,
            "ClusterRole",
            None,
            "mirrored",
            json!({"metadata": {"labels": {"iam.kubesphere.io/clusterrole-ref": "x"}}}),
        ),
    ];
    let cluster_role_bindings = vec![
        obj(rbac, "ClusterRoleBinding", None, "kubesphere", json!({})),
        obj(
            rbac,
            "ClusterRoleBinding",
            None,
            "ks-core-post-delete",
            json!({}),
        ),
        obj(
            rbac,
            "ClusterRoleBinding",
            None,
            "admin-cluster-admin",
            json!({"metadata": {"ownerReferences": user_owner}}),
        ),
        obj(rbac, "ClusterRoleBinding", None, "cluster-admin", json!({})),
        obj(rbac, "ClusterRoleBinding", None, "acme-admin", json!({})),
    ];
    let roles = vec![
        obj(
            rbac,
            "Role",
            Some("kubesphere-system"),
            "kubesphere:iam:x",
            json!({}),
        ),
        obj(
            rbac,
            "Role",
            Some("project-a"),
            "project-viewer",
            json!({"metadata": {"labels": {"iam.kubesphere.io/role-ref": "viewer"}}}),
        ),
        obj(rbac, "Role", Some("project-a"), "kubesphere", json!({})),
    ];

    let csrs = vec![
        obj(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            None,
            "admin-csr-1",
            json!({"metadata": {"labels": {"kubesphere.io/username": "admin"}}}),
        ),
        obj(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            None,
            "node-csr-1",
            json!({}),
        ),
    ];

    let controllers = vec![
        obj(
            "apps/v1",
            "Deployment",
            Some("kubesphere-system"),
            "ks-controller-manager",
            json!({"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}),
        ),
        obj(
            "apps/v1",
            "Deployment",
            Some("kubesphere-system"),
            "ks-apiserver",
            json!({"spec": {"replicas": 0}, "status": {}}),
        ),
    ];

    let app_owner = |name: &str| {
        json!([{"apiVersion": "app.k8s.io/v1beta1", "kind": "Application", "name": name,
                "uid": format!("uid-project-a-{name}"), "blockOwnerDeletion": true}])
    };
    let kept_objects = vec![
        ObservedList {
            resource: rt("apps", "v1", "Deployment", "deployments", true),
            objects: vec![
                obj(
                    "apps/v1",
                    "Deployment",
                    Some("project-a"),
                    "web",
                    json!({"metadata": {"ownerReferences": app_owner("ks-app"),
                                        "annotations": {"kubesphere.io/creator": "admin"}}}),
                ),
                obj(
                    "apps/v1",
                    "Deployment",
                    Some("project-a"),
                    "theirs",
                    json!({"metadata": {"ownerReferences": app_owner("their-app")}}),
                ),
            ],
        },
        ObservedList {
            resource: rt("", "v1", "ConfigMap", "configmaps", true),
            objects: vec![obj(
                "v1",
                "ConfigMap",
                Some("project-a"),
                "customer",
                json!({"metadata": {"labels": {"kubesphere.io/managed": "true"}}}),
            )],
        },
    ];

    Inventory {
        cluster: ClusterIdentity {
            kube_system_uid: "uid-kube-system".into(),
            server: "https://127.0.0.1:6443".into(),
            context: Some("test".into()),
        },
        resource_types: vec![workspaces, users, installplans, apps, widgets],
        crds,
        namespaces,
        validating_webhooks,
        mutating_webhooks,
        api_services,
        cluster_roles,
        cluster_role_bindings,
        roles,
        role_bindings: vec![],
        csrs,
        controllers,
        kept_objects,
        volume_claims: vec![],
        owned_cluster_objects: vec![],
        helm: Default::default(),
        // my-ext-ns, named by InstallPlan my-ext, holds only what
        // Kubernetes puts in every namespace.
        namespace_contents: vec![NamespaceContent {
            namespace: "my-ext-ns".into(),
            objects: vec![
                ObservedList {
                    resource: rt("", "v1", "ServiceAccount", "serviceaccounts", true),
                    objects: vec![obj(
                        "v1",
                        "ServiceAccount",
                        Some("my-ext-ns"),
                        "default",
                        json!({}),
                    )],
                },
                ObservedList {
                    resource: rt("", "v1", "ConfigMap", "configmaps", true),
                    objects: vec![obj(
                        "v1",
                        "ConfigMap",
                        Some("my-ext-ns"),
                        "kube-root-ca.crt",
                        json!({}),
                    )],
                },
            ],
            gaps: vec![],
        }],
        issues: vec![DiscoveryIssue::ApiGroupUnavailable {
            group_version: "acme.io/v1".into(),
            message: "the server is currently unable to handle the request".into(),
        }],
    }
}
