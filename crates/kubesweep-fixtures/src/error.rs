//! Errors of the fixtures library: one enum, each variant naming what failed and carrying its source.

/// Result with the fixtures [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while seeding, snapshotting or encoding fixtures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("failed to {action} {object}")]
    Api {
        /// What was attempted: `apply`, `delete`, `get`, `patch`...
        action: &'static str,
        /// The object, as `kind namespace/name`.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A CRD did not become Established in time.
    #[error("CRD {name} not Established after {seconds}s: {reason}")]
    NotEstablished {
        /// CRD name.
        name: String,
        /// How long the seed waited.
        seconds: u64,
        /// Last condition message seen.
        reason: String,
    },
    /// Objects did not settle (e.g. Deployments not observed by their controller) in time.
    #[error("{what} did not settle after {seconds}s")]
    NotSettled {
        /// What was waited for.
        what: String,
        /// How long the seed waited.
        seconds: u64,
    },
    /// JSON encoding failed.
    #[error("failed to encode JSON")]
    Encode(#[source] serde_json::Error),
    /// gzip compression or decompression failed.
    #[error("failed to (de)compress a Helm release")]
    Compress(#[source] std::io::Error),
    /// A Helm release record could not be decoded.
    #[error("failed to decode a Helm release: {0}")]
    Decode(String),
    /// A `--scale` or `--profile` value was not understood.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Reading or building the kubeconfig failed.
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        /// The file, or a description of where the config came from.
        path: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
