//! Connecting to a cluster: builds a [`kube::Client`] from `--kubeconfig` /
//! `--context` (or `KUBECONFIG`, `~/.kube/config`, in-cluster), turns every way
//! this can fail into a typed, actionable error, and identifies the cluster by
//! the UID of its `kube-system` namespace so a saved plan cannot be applied to
//! another cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};

pub use crate::inventory::ClusterIdentity;

/// Everything that can go wrong while connecting; each variant says what the
/// user has to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig file named by `--kubeconfig` or `KUBECONFIG` does not exist.
    #[error("kubeconfig {path} does not exist")]
    KubeconfigMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The kubeconfig exists but cannot be read or parsed.
    #[error("kubeconfig {path} is malformed")]
    KubeconfigMalformed {
        /// The path that was read (or `KUBECONFIG` when merged from several files).
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: KubeconfigError,
    },
    /// `--context` names a context the kubeconfig does not define.
    #[error("context {context:?} not found in kubeconfig (available: {})", available.join(", "))]
    UnknownContext {
        /// The requested context.
        context: String,
        /// The contexts the kubeconfig defines.
        available: Vec<String>,
    },
    /// The kubeconfig defines no current context and none was requested.
    #[error("kubeconfig has no current-context; pass --context (available: {})", available.join(", "))]
    NoCurrentContext {
        /// The contexts the kubeconfig defines.
        available: Vec<String>,
    },
    /// The selected context is incomplete (missing cluster, bad URL, unreadable certificate...).
    #[error("kubeconfig context {context:?} is unusable")]
    InvalidContext {
        /// The context that was selected.
        context: String,
        /// Why kube rejected it.
        #[source]
        source: KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no kubeconfig found (tried --kubeconfig, KUBECONFIG, ~/.kube/config) and not running in a cluster: {detail}"
    )]
    NoConfiguration {
        /// Why the in-cluster configuration was unusable.
        #[source]
        source: kube::config::InClusterError,
        /// What was missing.
        detail: String,
    },
    /// The client could not be built from an otherwise valid configuration (TLS material...).
    #[error("failed to build a client for {server}")]
    ClientBuild {
        /// API server URL.
        server: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// The API server could not be reached (DNS, refused, TLS handshake, timeout).
    #[error("cannot reach the API server at {server}")]
    Unreachable {
        /// API server URL.
        server: String,
        /// The transport error.
        #[source]
        source: kube::Error,
    },
    /// The first request got no answer within the connect timeout plus a
    /// little slack, retries included (a server that accepts connections
    /// but says nothing).
    #[error("no answer from the API server at {server} within {}s", after.as_secs())]
    NoAnswer {
        /// API server URL.
        server: String,
        /// How long kubesweep waited.
        after: Duration,
    },
    /// Credentials could not be obtained locally (exec plugin, token file, OIDC refresh).
    #[error("failed to obtain credentials for {server}")]
    Credentials {
        /// API server URL.
        server: String,
        /// The auth error.
        #[source]
        source: kube::Error,
    },
    /// The server rejected the credentials (401).
    #[error("the API server at {server} rejected the credentials (401 Unauthorized): {message}")]
    Unauthorized {
        /// API server URL.
        server: String,
        /// The server's message.
        message: String,
    },
    /// The credentials are valid but may not read `kube-system` (403).
    #[error("forbidden to read namespace kube-system at {server} (403): {message}")]
    Forbidden {
        /// API server URL.
        server: String,
        /// The server's message.
        message: String,
    },
    /// Something answered at the server's address, but not as a Kubernetes
    /// API server would (an HTML page, a plain-text 404, JSON of another
    /// shape): a wrong URL, port or proxy.
    #[error("the server at {server} answered, but is not a Kubernetes API server: {detail}")]
    NotKubernetes {
        /// API server URL.
        server: String,
        /// What it answered.
        detail: String,
    },
    /// A kubeconfig held in memory (a member's) could not be turned into a
    /// client. Says no more: the parser's words could quote secret material.
    #[error("the kubeconfig is unusable (incomplete context, cluster or credentials)")]
    InMemoryKubeconfig,
    /// Any other API error while identifying the cluster.
    #[error("failed to identify the cluster at {server}")]
    Api {
        /// API server URL.
        server: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// How to connect. `Default` means: `KUBECONFIG` / `~/.kube/config` with its
/// current context, else in-cluster.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Explicit kubeconfig path (`--kubeconfig`); wins over `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// Context to use (`--context`); default is the kubeconfig's current context.
    pub context: Option<String>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Per-request read timeout. We never hold long-lived watches open (waits
    /// poll), so a bound here turns a hung server into a retryable error.
    pub read_timeout: Duration,
    /// Use the pod's service account only (hook mode), whatever kubeconfig
    /// the environment names: see [`in_cluster_config`].
    pub in_cluster: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            in_cluster: false,
        }
    }
}

/// A connected client and the identity of the cluster behind it.
#[derive(Clone)]
pub struct Cluster {
    /// The client; cheap to clone.
    pub client: Client,
    /// Which cluster this is.
    pub identity: ClusterIdentity,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Time allowed for the first contact beyond the connect timeout: room for
/// the quick retries of a refused or reset connection.
const FIRST_CONTACT_SLACK: Duration = Duration::from_secs(2);

/// Resolves the configuration, builds a client and proves it works by reading
/// the cluster identity (the first request surfaces unreachable / 401 / 403).
pub async fn connect(options: &ConnectOptions) -> Result<Cluster, ClusterError> {
    let (config, context) = load_config(options).await?;
    let server = config.cluster_url.to_string();
    let client = build_client(config).map_err(|source| build_error(&server, source))?;
    first_contact(client, &server, context, options).await
}

/// Connects with a kubeconfig held in memory (a member cluster's, read from
/// the host's Cluster object) and its current context, and identifies the
/// cluster as [`connect`] does. Nothing of the kubeconfig goes into the error:
/// a failure before the first request is [`ClusterError::InMemoryKubeconfig`].
pub async fn connect_with_kubeconfig(
    kubeconfig: Kubeconfig,
    options: &ConnectOptions,
) -> Result<Cluster, ClusterError> {
    let context = kubeconfig.current_context.clone();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|_| ClusterError::InMemoryKubeconfig)?;
    tune_config(&mut config, options);
    let server = config.cluster_url.to_string();
    let client = build_client(config).map_err(|_| ClusterError::InMemoryKubeconfig)?;
    first_contact(client, &server, context, options).await
}

/// Identifies the cluster behind `client` within one bound for the first
/// contact, retries included: a server that accepts connections but never
/// completes a handshake would otherwise cost a connect timeout per attempt.
async fn first_contact(
    client: Client,
    server: &str,
    context: Option<String>,
    options: &ConnectOptions,
) -> Result<Cluster, ClusterError> {
    let deadline = options.connect_timeout + FIRST_CONTACT_SLACK;
    let identity = tokio::time::timeout(deadline, identify(&client, server, context))
        .await
        .map_err(|_| ClusterError::NoAnswer {
            server: server.to_owned(),
            after: deadline,
        })??;
    Ok(Cluster { client, identity })
}

/// Builds a client from an explicit [`Config`] with kubesweep's transport
/// settings (see [`tune_config`]). Used by tests that connect with a token.
/// Must be called within a Tokio runtime (the retry layer spawns a worker).
pub fn client_from_config(mut config: Config) -> Result<Client, ClusterError> {
    let server = config.cluster_url.to_string();
    tune_config(&mut config, &ConnectOptions::default());
    build_client(config).map_err(|source| build_error(&server, source))
}

/// kube runs exec credential plugins while building the client, so a failing
/// plugin surfaces here; name it as a credential problem.
fn build_error(server: &str, source: kube::Error) -> ClusterError {
    let server = server.to_string();
    match source {
        kube::Error::Auth(_) => ClusterError::Credentials { server, source },
        source => ClusterError::ClientBuild { server, source },
    }
}

/// Builds the client with a short retry layer at the HTTP level for what
/// only response headers say (see [`crate::http_retry`]); [`crate::retry`]
/// adds the longer horizon and everything else (other 5xx, broken
/// connections, a 503 without `Retry-After`).
fn build_client(config: Config) -> Result<Client, kube::Error> {
    let gate = crate::http_retry::ThrottleGate::default();
    let policy = crate::http_retry::ServerAskedRetry::new(
        3,
        Duration::from_millis(100),
        Duration::from_secs(10),
        gate.clone(),
    );
    // The retry layer needs a cloneable service; kube's stack is boxed, so a
    // buffer (a channel to one worker task) goes in between. The gate sits
    // under the retries, so that first attempts and retries both wait it out.
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&gate)
        .with_layer(&tower::retry::RetryLayer::new(policy))
        .build())
}

/// Applies kubesweep's transport settings to a config.
///
/// kube-rs 5 enables a tower retry layer by default that retries 429/503/504 up
/// to 15 times with delays growing to minutes. A broken aggregated APIService
/// answers 503, so discovery of one dead group would stall for minutes. We turn
/// it off and add a bounded one instead (see `build_client`).
pub fn tune_config(config: &mut Config, options: &ConnectOptions) {
    config.default_retry = false;
    config.connect_timeout = Some(options.connect_timeout);
    config.read_timeout = Some(options.read_timeout);
    // Count the read timeout from when a request is written, not from when a
    // pooled connection went idle.
    config.reset_reader_on_write = true;
}

/// Reads the cluster identity from `kube-system`, classifying failures.
pub async fn identify(
    client: &Client,
    server: &str,
    context: Option<String>,
) -> Result<ClusterIdentity, ClusterError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = crate::retry::with_retry(
        &crate::retry::RetryPolicy::quick(),
        "get namespace kube-system",
        || namespaces.get("kube-system"),
    )
    .await
    .map_err(|source| classify(server, source))?;
    let kube_system_uid = ns.metadata.uid.unwrap_or_default();
    Ok(ClusterIdentity {
        server: server.to_string(),
        context,
        kube_system_uid,
    })
}

fn classify(server: &str, source: kube::Error) -> ClusterError {
    let server = server.to_string();
    match &source {
        kube::Error::Api(status) if status.code == 401 => ClusterError::Unauthorized {
            server,
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 403 => ClusterError::Forbidden {
            server,
            message: status.message.clone(),
        },
        kube::Error::Auth(auth) => ClusterError::Unauthorized {
            server,
            message: auth.to_string(),
        },
        e if matches!(
            crate::retry::wrapped_kube_error(e),
            Some(kube::Error::Auth(_))
        ) =>
        {
            ClusterError::Unauthorized {
                server,
                message: crate::discover::error_message(e),
            }
        }
        e if crate::retry::is_transport_error(e) => ClusterError::Unreachable { server, source },
        e => match not_kubernetes(e) {
            Some(detail) => ClusterError::NotKubernetes { server, detail },
            None => ClusterError::Api { server, source },
        },
    }
}

/// What the first request got back, when it shows that no Kubernetes API
/// server answered: an error whose body is not a `Status` (kube marks it
/// "Failed to parse error data"), or a success whose body is not a
/// Namespace. A Kubernetes 404 is a `Status` and stays an API error.
fn not_kubernetes(error: &kube::Error) -> Option<String> {
    const UNPARSED_STATUS: &str = "Failed to parse error data";
    match crate::retry::wrapped_kube_error(error).unwrap_or(error) {
        kube::Error::Api(status) if status.reason == UNPARSED_STATUS => {
            let body: String = status.message.chars().take(80).collect();
            let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
            Some(format!(
                "GET /api/v1/namespaces/kube-system answered {} with a body that is not a Kubernetes Status ({body:?})",
                status.code
            ))
        }
        kube::Error::SerdeError(e) => Some(format!(
            "GET /api/v1/namespaces/kube-system answered with a body that is not a Namespace ({e})"
        )),
        _ => None,
    }
}

/// The standard in-cluster token file; `KUBESWEEP_INCLUSTER_TOKEN_FILE`
/// overrides it (tests imitate a pod without one).
pub const INCLUSTER_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The standard in-cluster CA bundle; `KUBESWEEP_INCLUSTER_CA_FILE` overrides it.
pub const INCLUSTER_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The pod's own configuration, as client-go builds it: the API server from
/// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the service
/// account's token file (re-read as the kubelet rotates it) and CA bundle.
/// The file paths can be overridden by `KUBESWEEP_INCLUSTER_TOKEN_FILE` and
/// `KUBESWEEP_INCLUSTER_CA_FILE` (for tests outside a pod); the standard
/// paths stay the default. No kubeconfig is read, so a `KUBECONFIG` in the
/// image's environment cannot redirect a hook.
pub async fn in_cluster_config() -> Result<Config, ClusterError> {
    use kube::config::{
        AuthInfo, Cluster as KubeCluster, Context, NamedAuthInfo, NamedCluster, NamedContext,
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing = |what: &str| ClusterError::NoConfiguration {
        source: kube::config::InClusterError::ReadEnvironmentVariable(
            std::env::VarError::NotPresent,
        ),
        detail: what.to_owned(),
    };
    let host = env("KUBERNETES_SERVICE_HOST")
        .ok_or_else(|| missing("KUBERNETES_SERVICE_HOST is not set"))?;
    let port = env("KUBERNETES_SERVICE_PORT")
        .ok_or_else(|| missing("KUBERNETES_SERVICE_PORT is not set"))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let token =
        env("KUBESWEEP_INCLUSTER_TOKEN_FILE").unwrap_or_else(|| INCLUSTER_TOKEN_FILE.to_owned());
    let ca = env("KUBESWEEP_INCLUSTER_CA_FILE").unwrap_or_else(|| INCLUSTER_CA_FILE.to_owned());
    for (what, path) in [("service account token", &token), ("CA bundle", &ca)] {
        if !Path::new(path).is_file() {
            return Err(missing(&format!("the {what} {path} does not exist")));
        }
    }
    // kube reads the CA and re-reads the token file for us when they come
    // through a kubeconfig; the in-memory one names the same files.
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "in-cluster".into(),
            other: Default::default(),
            cluster: Some(KubeCluster {
                server: Some(format!("https://{host}:{port}")),
                certificate_authority: Some(ca.clone()),
                ..KubeCluster::default()
            }),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "in-cluster".into(),
            other: Default::default(),
            auth_info: Some(AuthInfo {
                token_file: Some(token),
                ..AuthInfo::default()
            }),
        }],
        contexts: vec![NamedContext {
            name: "in-cluster".into(),
            other: Default::default(),
            context: Some(Context {
                cluster: "in-cluster".into(),
                user: Some("in-cluster".into()),
                ..Context::default()
            }),
        }],
        current_context: Some("in-cluster".into()),
        ..Kubeconfig::default()
    };
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClusterError::InvalidContext {
            context: "in-cluster".into(),
            source,
        })
}

async fn load_config(options: &ConnectOptions) -> Result<(Config, Option<String>), ClusterError> {
    if options.in_cluster {
        let mut config = in_cluster_config().await?;
        tune_config(&mut config, options);
        return Ok((config, None));
    }
    let (kubeconfig, path) = match read_kubeconfig(options)? {
        Some(found) => found,
        None => {
            // No kubeconfig anywhere: the in-cluster service account is the
            // only remaining source (hook mode).
            let mut config =
                Config::incluster().map_err(|source| ClusterError::NoConfiguration {
                    detail: source.to_string(),
                    source,
                })?;
            tune_config(&mut config, options);
            return Ok((config, None));
        }
    };
    let available: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let context = match (&options.context, &kubeconfig.current_context) {
        (Some(wanted), _) => {
            if !available.iter().any(|c| c == wanted) {
                return Err(ClusterError::UnknownContext {
                    context: wanted.clone(),
                    available,
                });
            }
            wanted.clone()
        }
        (None, Some(current)) if !current.is_empty() => {
            if !available.iter().any(|c| c == current) {
                return Err(ClusterError::UnknownContext {
                    context: current.clone(),
                    available,
                });
            }
            current.clone()
        }
        (None, _) => return Err(ClusterError::NoCurrentContext { available }),
    };
    let kube_options = KubeConfigOptions {
        context: Some(context.clone()),
        cluster: None,
        user: None,
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
        .await
        .map_err(|source| {
            tracing::debug!(path = %path.display(), "kubeconfig context rejected");
            ClusterError::InvalidContext {
                context: context.clone(),
                source,
            }
        })?;
    tune_config(&mut config, options);
    Ok((config, Some(context)))
}

/// Finds and parses the kubeconfig; `Ok(None)` when there is none at all.
fn read_kubeconfig(
    options: &ConnectOptions,
) -> Result<Option<(Kubeconfig, PathBuf)>, ClusterError> {
    if let Some(path) = &options.kubeconfig {
        return read_file(path).map(|k| Some((k, path.clone())));
    }
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            let mut merged = Kubeconfig::default();
            for path in &paths {
                let next = read_file(path)?;
                merged =
                    merged
                        .merge(next)
                        .map_err(|source| ClusterError::KubeconfigMalformed {
                            path: path.clone(),
                            source,
                        })?;
            }
            return Ok(Some((merged, PathBuf::from(value))));
        }
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    let default = Path::new(&home).join(".kube").join("config");
    if default.exists() {
        read_file(&default).map(|k| Some((k, default)))
    } else {
        Ok(None)
    }
}

fn read_file(path: &Path) -> Result<Kubeconfig, ClusterError> {
    if !path.exists() {
        return Err(ClusterError::KubeconfigMissing {
            path: path.to_path_buf(),
        });
    }
    Kubeconfig::read_from(path).map_err(|source| ClusterError::KubeconfigMalformed {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    const TWO_CONTEXTS: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: alpha
  context: {cluster: c1, user: u1}
- name: beta
  context: {cluster: c1, user: u1}
current-context: alpha
users:
- name: u1
  user: {token: abc}
"#;

    #[tokio::test]
    async fn missing_kubeconfig_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ConnectOptions {
            kubeconfig: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let err = connect(&options).await.expect_err("must fail");
        assert!(
            matches!(err, ClusterError::KubeconfigMissing { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn malformed_kubeconfig_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "bad", "clusters: [ {name: ");
        let options = ConnectOptions {
            kubeconfig: Some(path),
            ..Default::default()
        };
        let err = connect(&options).await.expect_err("must fail");
        assert!(
            matches!(err, ClusterError::KubeconfigMalformed { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unknown_context_lists_available_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "cfg", TWO_CONTEXTS);
        let options = ConnectOptions {
            kubeconfig: Some(path),
            context: Some("gamma".into()),
            ..Default::default()
        };
        let err = connect(&options).await.expect_err("must fail");
        match err {
            ClusterError::UnknownContext { context, available } => {
                assert_eq!(context, "gamma");
                assert_eq!(available, vec!["alpha".to_string(), "beta".to_string()]);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn failing_credential_plugin_is_not_reported_as_unreachable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "cfg",
            r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: alpha
  context: {cluster: c1, user: u1}
current-context: alpha
users:
- name: u1
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/false, interactiveMode: Never}
"#,
        );
        let options = ConnectOptions {
            kubeconfig: Some(path),
            ..Default::default()
        };
        let err = connect(&options).await.expect_err("must fail");
        assert!(matches!(err, ClusterError::Credentials { .. }), "{err}");
    }

    #[tokio::test]
    async fn unreachable_server_names_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "cfg", TWO_CONTEXTS);
        let options = ConnectOptions {
            kubeconfig: Some(path),
            context: Some("beta".into()),
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let err = connect(&options).await.expect_err("must fail");
        match &err {
            ClusterError::Unreachable { server, .. } => {
                assert!(server.contains("127.0.0.1:1"), "{server}")
            }
            other => panic!("unexpected {other}"),
        }
    }
}
