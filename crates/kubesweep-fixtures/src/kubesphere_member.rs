//! Multi-cluster footprints (fact sheet section 8).
//!
//! - `kubesphere-member`: what a KubeSphere 4.1 *member* cluster holds. Unlike the host footprint
//!   of [`crate::kubesphere_v4`] (taken after `helm uninstall ks-core`), ks-core is still installed
//!   here as the agent: its release record names the Deployment `ks-agent` (no ks-apiserver, no
//!   console). The extension runs as its agent release `<ext>-agent`, proven only by the
//!   `kubesphere.io/extension-ref` label its objects carry: a member has no InstallPlan. The
//!   workspaces and global IAM objects are the copies the host synced down, and the namespaces are
//!   labelled as on the host. Decoys: the usual foreign ones, plus a foreign Helm release that is
//!   also named `<ext>-agent` but carries no platform label (a name alone proves nothing).
//! - The host's `clusters.cluster.kubesphere.io` objects for a set of members, and the Fail
//!   webhook on them that blocks their finalizer removal once its service is gone
//!   (kubesphere#6154): see [`seed_host_clusters`].

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use serde_json::{Value, json};

use crate::crds::{FOREIGN_CRDS, KUBESPHERE_V4_CRDS, kubesphere_crd as crd};
use crate::decoys::{self, ACME_SYSTEM};
use crate::error::Result;
use crate::footprint::{ObjectKey, Role};
use crate::helm::{Chart, ChartMetadata, Release, ReleaseInfo, render_manifest};
use crate::kubesphere_v4::{
    self, EXTENSION, EXTENSION_NAMESPACE, RELEASE_TIME, SYSTEM_WORKSPACE, WEBHOOK_SERVICE,
    workspace_name,
};
use crate::plan::{FOREIGN_MANAGER, HELM_MANAGER, KS_MANAGER, Meta, Plan, Stage, typed};
use crate::scale::Scale;
use crate::seed::{SeedOptions, SeededFootprint, seed_plan};

/// Profile name on the command line.
pub const PROFILE: &str = "kubesphere-member";
/// The extension's agent release on the member (`<ext>-agent`).
pub const AGENT_RELEASE: &str = "whizard-monitoring-agent";
/// The Deployment of ks-core's release on a member.
pub const KS_AGENT: &str = "ks-agent";
/// The foreign release named like an extension agent, in [`ACME_SYSTEM`].
pub const DECOY_AGENT_RELEASE: &str = "whizard-monitoring-agent";
/// The name the host's own Cluster object has.
pub const HOST_CLUSTER: &str = "host";
/// The validating webhook configuration guarding Cluster objects.
pub const CLUSTER_WEBHOOK: &str = "cluster.kubesphere.io";
/// The label marking the host's own Cluster object.
pub const HOST_ROLE_LABEL: &str = "cluster-role.kubesphere.io/host";
/// Footprint name of [`seed_host_clusters`].
pub const HOST_CLUSTERS: &str = "kubesphere-host-clusters";
/// What the host's sync controller puts on the copies it writes into a member.
const SYNCED_FROM_HOST: (&str, &str) = ("kubesphere.io/managed", "true");

/// Seeds a member cluster's footprint and decoys ([`PROFILE`]); `opts.profile` is ignored.
pub async fn seed_member(client: &Client, opts: &SeedOptions) -> Result<SeededFootprint> {
    seed_plan(client, plan(opts.scale), PROFILE, opts).await
}

/// Seeds, on a host, one `clusters.cluster.kubesphere.io` object per member (a direct connection
/// carrying that member's kubeconfig, base64 as the API stores `format: byte` fields) plus the
/// host's own (labelled [`HOST_ROLE_LABEL`]), each with `finalizer.cluster.kubesphere.io`, and the
/// validating webhook [`CLUSTER_WEBHOOK`] with `failurePolicy: Fail` calling the absent
/// `ks-controller-manager` Service: while it exists, no Cluster object can lose its finalizer
/// (kubesphere#6154). Writes the Cluster CRD when missing. Idempotent, like [`crate::seed`].
pub async fn seed_host_clusters(
    client: &Client,
    members: &[(String, Vec<u8>)],
) -> Result<SeededFootprint> {
    let opts = SeedOptions::default();
    seed_plan(client, host_clusters_plan(members), HOST_CLUSTERS, &opts).await
}

/// The member footprint.
pub(crate) fn plan(scale: Scale) -> Plan {
    let mut p = Plan::default();
    decoys::first(&mut p);
    for c in KUBESPHERE_V4_CRDS {
        p.crd(c, Role::Platform);
    }
    for c in FOREIGN_CRDS {
        p.crd(c, Role::Foreign);
    }
    kubesphere_v4::namespaces(&mut p);
    kubesphere_v4::global_iam(&mut p);
    synced_workspace(&mut p, SYSTEM_WORKSPACE);
    for i in 0..scale.workspaces {
        kubesphere_v4::tenant(&mut p, &workspace_name(i), i, scale);
    }
    ks_core_agent(&mut p);
    extension_agent(&mut p);
    kubesphere_v4::hook_leftovers(&mut p);
    decoys::add(&mut p);
    decoy_agent_release(&mut p);
    kubesphere_v4::webhooks(&mut p);
    p
}

/// The host's copy of the system workspace, as synced into a member: no Helm ownership (the
/// member's ks-core did not create it), the sync controller's label.
fn synced_workspace(p: &mut Plan, name: &str) {
    let ws = crd("tenant.kubesphere.io", "workspaces");
    p.cr(
        ws,
        None,
        name,
        Role::Platform,
        Meta::new()
            .label(SYNCED_FROM_HOST.0, SYNCED_FROM_HOST.1)
            .label("kubefed.io/managed", "false")
            .finalizers(ws.finalizers),
        json!({"spec": {"manager": "admin"}}),
    );
}

fn ks_core_meta() -> Meta {
    Meta::new()
        .label("app.kubernetes.io/managed-by", "Helm")
        .annotation("meta.helm.sh/release-name", "ks-core")
        .annotation("meta.helm.sh/release-namespace", "kubesphere-system")
}

/// ks-core as installed on a member: its release record and the agent's Deployment, ServiceAccount
/// and ClusterRoleBinding.
fn ks_core_agent(p: &mut Plan) {
    let ns = "kubesphere-system";
    let mut docs = Vec::new();
    let sa = p.add(
        &typed::<ServiceAccount>(),
        Some(ns),
        "kubesphere",
        Role::Platform,
        HELM_MANAGER,
        ks_core_meta(),
        Value::Null,
    );
    docs.push(("serviceaccount.yaml", rendered(p, &sa)));
    let dep = p.add(
        &typed::<Deployment>(),
        Some(ns),
        KS_AGENT,
        Role::Platform,
        HELM_MANAGER,
        ks_core_meta().label("app", KS_AGENT),
        kubesphere_v4::deployment(KS_AGENT, 0),
    );
    docs.push(("ks-agent.yaml", rendered(p, &dep)));
    let crb = p.add(
        &typed::<ClusterRoleBinding>(),
        None,
        "kubesphere",
        Role::Platform,
        HELM_MANAGER,
        ks_core_meta(),
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "kubesphere", "namespace": ns}]}),
    );
    docs.push(("clusterrolebinding.yaml", rendered(p, &crb)));
    release_record(p, "ks-core", ns, "ks-core", "1.1.3", &docs, Role::Platform);
}

/// The extension's agent release in its namespace: objects labelled with the extension, no
/// InstallPlan anywhere on this cluster.
fn extension_agent(p: &mut Plan) {
    let meta = || {
        Meta::new()
            .label("kubesphere.io/extension-ref", EXTENSION)
            .label("app.kubernetes.io/managed-by", "Helm")
            .annotation("meta.helm.sh/release-name", AGENT_RELEASE)
            .annotation("meta.helm.sh/release-namespace", EXTENSION_NAMESPACE)
    };
    let name = format!("{EXTENSION}-agent");
    let mut docs = Vec::new();
    let cm = p.add(
        &typed::<ConfigMap>(),
        Some(EXTENSION_NAMESPACE),
        &format!("{name}-config"),
        Role::Platform,
        HELM_MANAGER,
        meta(),
        json!({"data": {"agent.yaml": "scrapeInterval: 30s\n"}}),
    );
    docs.push(("configmap.yaml", rendered(p, &cm)));
    let dep = p.add(
        &typed::<Deployment>(),
        Some(EXTENSION_NAMESPACE),
        &name,
        Role::Platform,
        HELM_MANAGER,
        meta(),
        kubesphere_v4::deployment(&name, 0),
    );
    docs.push(("deployment.yaml", rendered(p, &dep)));
    let cr = p.add(
        &typed::<ClusterRole>(),
        None,
        &name,
        Role::Platform,
        HELM_MANAGER,
        meta(),
        json!({"rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]}),
    );
    docs.push(("clusterrole.yaml", rendered(p, &cr)));
    release_record(
        p,
        AGENT_RELEASE,
        EXTENSION_NAMESPACE,
        AGENT_RELEASE,
        "1.1.0",
        &docs,
        Role::Platform,
    );
}

/// A foreign release named like the extension's agent, whose objects carry no platform label.
fn decoy_agent_release(p: &mut Plan) {
    let meta = || {
        Meta::new()
            .label("app.kubernetes.io/managed-by", "Helm")
            .annotation("meta.helm.sh/release-name", DECOY_AGENT_RELEASE)
            .annotation("meta.helm.sh/release-namespace", ACME_SYSTEM)
    };
    let cm = p.add(
        &typed::<ConfigMap>(),
        Some(ACME_SYSTEM),
        "acme-whizard-agent",
        Role::Foreign,
        FOREIGN_MANAGER,
        meta(),
        json!({"data": {"mode": "standalone"}}),
    );
    let docs = vec![("configmap.yaml", rendered(p, &cm))];
    release_record(
        p,
        DECOY_AGENT_RELEASE,
        ACME_SYSTEM,
        "acme-whizard-agent",
        "2.0.0",
        &docs,
        Role::Foreign,
    );
}

/// A Helm release record (`sh.helm.release.v1.<name>.v1`) whose manifest holds `docs`.
fn release_record(
    p: &mut Plan,
    name: &str,
    namespace: &str,
    chart: &str,
    version: &str,
    docs: &[(&str, Value)],
    role: Role,
) {
    let release = Release {
        name: name.into(),
        namespace: namespace.into(),
        version: 1,
        info: ReleaseInfo {
            status: "deployed".into(),
            first_deployed: RELEASE_TIME.into(),
            last_deployed: RELEASE_TIME.into(),
            description: "Install complete".into(),
        },
        chart: Chart {
            metadata: ChartMetadata {
                name: chart.into(),
                version: version.into(),
                app_version: version.into(),
            },
        },
        manifest: render_manifest(chart, docs),
    };
    // Encoding a fixed, small struct cannot fail; a failure here is a bug in the encoder.
    let encoded = release.encode().expect("encode a release record");
    p.add(
        &typed::<Secret>(),
        Some(namespace),
        &release.secret_name(),
        role,
        HELM_MANAGER,
        Meta::new()
            .label("owner", "helm")
            .label("name", name)
            .label("status", "deployed")
            .label("version", "1"),
        json!({"type": "helm.sh/release.v1", "stringData": {"release": encoded}}),
    );
}

/// An item's manifest as Helm rendered it.
fn rendered(p: &Plan, key: &ObjectKey) -> Value {
    p.items
        .iter()
        .find(|i| &i.object.key == key)
        .map(|i| i.manifest.clone())
        .unwrap_or(Value::Null)
}

/// The host's Cluster objects and their Fail webhook.
pub(crate) fn host_clusters_plan(members: &[(String, Vec<u8>)]) -> Plan {
    let mut p = Plan::default();
    let cluster = crd("cluster.kubesphere.io", "clusters");
    p.crd(cluster, Role::Platform);
    p.cr(
        cluster,
        None,
        HOST_CLUSTER,
        Role::Platform,
        Meta::new()
            .label(HOST_ROLE_LABEL, "")
            .label("kubesphere.io/managed", "true")
            .finalizers(cluster.finalizers),
        json!({"spec": {"provider": "kubesphere", "connection": {"type": "direct"}}}),
    );
    for (name, kubeconfig) in members {
        p.cr(
            cluster,
            None,
            name,
            Role::Platform,
            Meta::new()
                .label("kubesphere.io/managed", "true")
                .finalizers(cluster.finalizers),
            json!({"spec": {"provider": "kubesphere", "connection": {
                "type": "direct",
                "kubeconfig": base64::engine::general_purpose::STANDARD.encode(kubeconfig),
            }}}),
        );
    }
    let (ns, svc) = WEBHOOK_SERVICE;
    let ops = ["CREATE", "UPDATE", "DELETE"];
    p.add_staged(
        &typed::<ValidatingWebhookConfiguration>(),
        None,
        CLUSTER_WEBHOOK,
        Role::Platform,
        KS_MANAGER,
        Meta::new(),
        json!({"webhooks": [{
            "name": "vcluster.kb.io",
            "clientConfig": {"service": {"namespace": ns, "name": svc,
                                         "path": "/validate-cluster-kubesphere-io-v1alpha1-cluster", "port": 443}},
            "rules": [{"apiGroups": ["cluster.kubesphere.io"], "apiVersions": ["v1alpha1"],
                       "resources": ["clusters"], "operations": ops, "scope": "*"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]}),
        Stage::Last,
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_has_the_agent_and_no_host_only_pieces() {
        let f = plan(Scale::SMALL).footprint(PROFILE, Scale::SMALL);
        for (kind, ns, name) in [
            ("Deployment", Some("kubesphere-system"), KS_AGENT),
            (
                "Secret",
                Some("kubesphere-system"),
                "sh.helm.release.v1.ks-core.v1",
            ),
            (
                "Secret",
                Some(EXTENSION_NAMESPACE),
                "sh.helm.release.v1.whizard-monitoring-agent.v1",
            ),
            ("Workspace", None, SYSTEM_WORKSPACE),
            ("GlobalRole", None, "platform-admin"),
        ] {
            let o = f.find(kind, ns, name);
            assert!(
                o.is_some_and(|o| o.role == Role::Platform),
                "{kind} {ns:?} {name}"
            );
        }
        let decoy = f.find(
            "Secret",
            Some(ACME_SYSTEM),
            "sh.helm.release.v1.whizard-monitoring-agent.v1",
        );
        assert!(decoy.is_some_and(|o| o.role == Role::Foreign));
        for (kind, name) in [
            ("InstallPlan", EXTENSION),
            ("Cluster", HOST_CLUSTER),
            ("WorkspaceTemplate", SYSTEM_WORKSPACE),
        ] {
            assert!(f.find(kind, None, name).is_none(), "{kind} {name}");
        }
        assert!(
            f.find("Deployment", Some("kubesphere-system"), "ks-apiserver")
                .is_none()
        );
    }

    #[test]
    fn host_clusters_carry_the_member_kubeconfigs_and_a_fail_webhook() {
        let p = host_clusters_plan(&[("member-1".into(), b"apiVersion: v1\n".to_vec())]);
        let member = p
            .items
            .iter()
            .find(|i| i.object.key.kind == "Cluster" && i.object.key.name == "member-1")
            .expect("member Cluster");
        assert_eq!(
            member.manifest["spec"]["connection"]["kubeconfig"],
            json!("YXBpVmVyc2lvbjogdjEK")
        );
        assert_eq!(
            member.object.finalizers,
            vec!["finalizer.cluster.kubesphere.io".to_string()]
        );
        let host = p
            .items
            .iter()
            .find(|i| i.object.key.name == HOST_CLUSTER)
            .expect("host Cluster");
        assert!(host.manifest["metadata"]["labels"][HOST_ROLE_LABEL].is_string());
        let hook = p
            .items
            .iter()
            .find(|i| i.object.key.name == CLUSTER_WEBHOOK)
            .expect("webhook");
        assert_eq!(hook.stage, Stage::Last);
        assert_eq!(hook.manifest["webhooks"][0]["failurePolicy"], json!("Fail"));
    }
}
