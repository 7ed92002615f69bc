//! The fleet: a KubeSphere host and the member clusters its
//! `clusters.cluster.kubesphere.io` objects name. Owns reading those objects
//! into members (each member's kubeconfig kept as secret bytes, in memory
//! only), connecting to a member, and the pure rules of a fleet run: which
//! members can be reached directly, and whether the host may run.
//!
//! A member's kubeconfig is secret material: [`SecretBytes`] has no
//! `Display` or `Serialize`, its `Debug` says only its length, and no error
//! built here quotes it (a parser's message could).

use base64::Engine as _;
use kube::api::{ApiResource, DynamicObject};
use kube::config::Kubeconfig;
use kube::core::GroupVersionKind;
use kube::{Api, Client};

use crate::cluster::{Cluster, ConnectOptions};

/// The API group of KubeSphere's Cluster objects.
pub const CLUSTER_GROUP: &str = "cluster.kubesphere.io";
/// The version the v4.1 CRD serves (and stores).
pub const CLUSTER_VERSION: &str = "v1alpha1";
/// The label that marks the host's own Cluster object.
pub const HOST_ROLE_LABEL: &str = "cluster-role.kubesphere.io/host";

/// Bytes that must never be printed, logged or written in clear.
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes, for the one place that needs them (building a client).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // Overwrite before the allocator reuses the memory; black_box keeps
        // the writes from being dropped as dead stores.
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// How kubesweep can reach a member.
#[derive(Debug)]
pub enum Reach {
    /// A direct connection with this kubeconfig.
    Direct(SecretBytes),
    /// Not directly: why.
    Unreachable(String),
}

/// A member cluster as the host's Cluster object describes it.
#[derive(Debug)]
pub struct MemberSpec {
    /// The Cluster object's name (the member's name in KubeSphere).
    pub name: String,
    /// How to reach it.
    pub reach: Reach,
}

/// What the host's Cluster objects say.
#[derive(Debug, Default)]
pub struct FleetObjects {
    /// The name of the host's own Cluster object, when it has one.
    pub host_name: Option<String>,
    /// The members, sorted by name.
    pub members: Vec<MemberSpec>,
}

/// Reads Cluster objects (as JSON) into the host's name and the members.
/// Pure: the same objects give the same answer.
pub fn members_from_objects(objects: &[serde_json::Value]) -> FleetObjects {
    let mut fleet = FleetObjects::default();
    for object in objects {
        let name = object
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let is_host = object
            .pointer("/metadata/labels")
            .and_then(|l| l.as_object())
            .is_some_and(|labels| labels.contains_key(HOST_ROLE_LABEL));
        if is_host {
            fleet.host_name = Some(name);
            continue;
        }
        let connection = object.pointer("/spec/connection");
        let kind = connection
            .and_then(|c| c.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let kubeconfig = connection
            .and_then(|c| c.get("kubeconfig"))
            .and_then(|k| k.as_str())
            .unwrap_or("");
        let reach = match kind {
            // KubeSphere treats an empty type as direct.
            "" | "direct" if kubeconfig.is_empty() => Reach::Unreachable(
                "direct connection without a kubeconfig in spec.connection.kubeconfig".into(),
            ),
            "" | "direct" => match base64::engine::general_purpose::STANDARD.decode(kubeconfig) {
                Ok(bytes) => Reach::Direct(SecretBytes::new(bytes)),
                Err(_) => Reach::Unreachable(
                    "spec.connection.kubeconfig is not base64 (format: byte)".into(),
                ),
            },
            "proxy" => Reach::Unreachable(
                "connection type proxy: KubeSphere reaches it through its agent tunnel, \
                 which kubesweep does not use; there is no kubeconfig to reach it directly"
                    .into(),
            ),
            other => Reach::Unreachable(format!("unknown connection type {other:?}")),
        };
        fleet.members.push(MemberSpec { name, reach });
    }
    fleet.members.sort_by(|a, b| a.name.cmp(&b.name));
    fleet
}

/// Lists the host's Cluster objects. A host that does not serve the kind
/// (no multi-cluster, or the CRD already gone) has no members.
pub async fn list_members(client: &Client) -> Result<FleetObjects, kube::Error> {
    let gvk = GroupVersionKind::gvk(CLUSTER_GROUP, CLUSTER_VERSION, "Cluster");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "clusters");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = match api.list(&Default::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(FleetObjects::default()),
        Err(e) => return Err(e),
    };
    let objects: Vec<serde_json::Value> = list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    Ok(members_from_objects(&objects))
}

/// Parses a member's kubeconfig, refusing what would make kubesweep run or
/// read something on this machine on the word of an object in the cluster:
/// exec credential plugins, auth providers, and paths to local files.
/// The reason never quotes the kubeconfig.
pub fn parse_kubeconfig(bytes: &SecretBytes) -> Result<Kubeconfig, String> {
    let text = std::str::from_utf8(bytes.expose())
        .map_err(|_| "the kubeconfig is not UTF-8 text".to_owned())?;
    let config = Kubeconfig::from_yaml(text)
        .map_err(|_| "the kubeconfig is not a valid kubeconfig document".to_owned())?;
    for user in config
        .auth_infos
        .iter()
        .filter_map(|a| a.auth_info.as_ref())
    {
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(
                "the kubeconfig's credentials run a command (exec or auth-provider), \
                 which kubesweep does not do for a kubeconfig read from a cluster"
                    .into(),
            );
        }
        if user.token_file.is_some()
            || user.client_certificate.is_some()
            || user.client_key.is_some()
        {
            return Err("the kubeconfig's credentials name local files, \
                 which kubesweep does not read for a kubeconfig read from a cluster"
                .into());
        }
    }
    for cluster in config.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
        if cluster.certificate_authority.is_some() {
            return Err("the kubeconfig names a local CA file, \
                 which kubesweep does not read for a kubeconfig read from a cluster"
                .into());
        }
    }
    Ok(config)
}

/// Connects to a member with its kubeconfig; the error is one line that
/// says why, without any of the kubeconfig.
pub async fn connect_member(
    kubeconfig: &SecretBytes,
    options: &ConnectOptions,
) -> Result<Cluster, String> {
    let config = parse_kubeconfig(kubeconfig)?;
    crate::cluster::connect_with_kubeconfig(config, options)
        .await
        .map_err(|e| chain(&e))
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message.lines().next().unwrap_or_default().to_owned()
}

/// Whether the host may run: only when every member was reached, or the
/// user said to go on without the unreachable ones.
pub fn host_may_run(unreachable: usize, skip_unreachable: bool) -> bool {
    unreachable == 0 || skip_unreachable
}

/// How to finish a member left behind, later, from a machine that can
/// reach it.
pub fn finish_later(member: &str) -> String {
    format!("kubesweep apply --kubeconfig <kubeconfig of member {member}>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: sekrit-token-value}\n";

    fn cluster(
        name: &str,
        labels: serde_json::Value,
        connection: serde_json::Value,
    ) -> serde_json::Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"connection": connection}})
    }

    #[test]
    fn host_is_not_a_member_and_members_are_sorted() {
        let objects = vec![
            cluster(
                "m2",
                json!({}),
                json!({"type": "direct", "kubeconfig": b64(KUBECONFIG)}),
            ),
            cluster(
                "host",
                json!({HOST_ROLE_LABEL: ""}),
                json!({"type": "direct"}),
            ),
            cluster("m1", json!({}), json!({"kubeconfig": b64(KUBECONFIG)})),
        ];
        let fleet = members_from_objects(&objects);
        assert_eq!(fleet.host_name.as_deref(), Some("host"));
        let names: Vec<&str> = fleet.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["m1", "m2"]);
        for member in &fleet.members {
            match &member.reach {
                Reach::Direct(bytes) => assert_eq!(bytes.expose(), KUBECONFIG.as_bytes()),
                Reach::Unreachable(why) => panic!("{} unreachable: {why}", member.name),
            }
        }
    }

    #[test]
    fn proxy_missing_and_malformed_connections_are_unreachable_with_a_reason() {
        let objects = vec![
            cluster("p", json!({}), json!({"type": "proxy", "token": "t"})),
            cluster("missing", json!({}), json!({"type": "direct"})),
            cluster(
                "bad",
                json!({}),
                json!({"type": "direct", "kubeconfig": "%%%"}),
            ),
            cluster("odd", json!({}), json!({"type": "carrier-pigeon"})),
        ];
        let fleet = members_from_objects(&objects);
        let why: Vec<(&str, &str)> = fleet
            .members
            .iter()
            .map(|m| match &m.reach {
                Reach::Unreachable(why) => (m.name.as_str(), why.as_str()),
                Reach::Direct(_) => panic!("{} reachable", m.name),
            })
            .collect();
        assert!(why.iter().any(|(n, w)| *n == "p" && w.contains("proxy")));
        assert!(
            why.iter()
                .any(|(n, w)| *n == "missing" && w.contains("without a kubeconfig"))
        );
        assert!(
            why.iter()
                .any(|(n, w)| *n == "bad" && w.contains("not base64"))
        );
        assert!(
            why.iter()
                .any(|(n, w)| *n == "odd" && w.contains("carrier-pigeon"))
        );
    }

    #[test]
    fn secret_bytes_never_show_in_debug() {
        let secret = SecretBytes::new(KUBECONFIG.as_bytes().to_vec());
        let spec = MemberSpec {
            name: "m".into(),
            reach: Reach::Direct(secret),
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn kubeconfig_errors_do_not_quote_it() {
        let broken = "apiVersion: v1\nclusters: [sekrit-token-value\n";
        let why =
            parse_kubeconfig(&SecretBytes::new(broken.as_bytes().to_vec())).expect_err("refused");
        assert!(!why.contains("sekrit"), "{why}");
        let exec = KUBECONFIG.replace(
            "user: {token: sekrit-token-value}",
            "user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sekrit-token-value}}",
        );
        let why = parse_kubeconfig(&SecretBytes::new(exec.into_bytes())).expect_err("refused");
        assert!(
            why.contains("run a command") && !why.contains("sekrit"),
            "{why}"
        );
        let file = KUBECONFIG.replace("{token: sekrit-token-value}", "{tokenFile: /etc/sekrit}");
        let why = parse_kubeconfig(&SecretBytes::new(file.into_bytes())).expect_err("refused");
        assert!(why.contains("local files"), "{why}");
        assert!(parse_kubeconfig(&SecretBytes::new(KUBECONFIG.as_bytes().to_vec())).is_ok());
    }

    #[test]
    fn host_runs_only_when_every_member_was_reached_or_skipping_was_asked() {
        assert!(host_may_run(0, false));
        assert!(!host_may_run(1, false));
        assert!(host_may_run(1, true));
        assert!(finish_later("m1").contains("--kubeconfig"));
    }
}
