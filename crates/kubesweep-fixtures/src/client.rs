//! Building a client from a kubeconfig the way kubectl finds one: an explicit file, else
//! `KUBECONFIG`, else `~/.kube/config`.

use std::path::Path;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// A client for the cluster of `kubeconfig` (or of `KUBECONFIG`, or `~/.kube/config`), using its
/// current context, or `context` when given.
pub async fn client_from_kubeconfig(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client> {
    let (source, config) = match kubeconfig {
        Some(path) => (path.display().to_string(), Kubeconfig::read_from(path)),
        None => (
            "$KUBECONFIG or ~/.kube/config".to_string(),
            Kubeconfig::read(),
        ),
    };
    let err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Kubeconfig {
        path: source.clone(),
        source: e,
    };
    let config = config.map_err(|e| err(Box::new(e)))?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(config, &options)
        .await
        .map_err(|e| err(Box::new(e)))?;
    Client::try_from(config).map_err(|e| err(Box::new(e)))
}
