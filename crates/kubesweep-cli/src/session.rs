//! Turning the shared flags into what every command needs: a loaded profile
//! and a connected cluster, with failures mapped to documented exit codes and
//! messages that walk the whole error chain on one line.

use crate::args::{ClusterArgs, ProfileArgs};
use crate::exit::{CliError, Exit};
use kubesweep::cluster::{Cluster, ClusterError, ConnectOptions};
use kubesweep::profile::{Profile, ProfileError};

/// `error: cause: cause ...` on one line. Each message contributes its first
/// line only: parsers append source snippets (a YAML error in a kubeconfig
/// quotes the offending lines), and the first line already says where.
pub fn chain(error: &dyn std::error::Error) -> String {
    let first_line = |e: &dyn std::error::Error| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    };
    let mut message = first_line(error);
    let mut source = error.source();
    while let Some(cause) = source {
        let text = first_line(cause);
        // kube and hyper often repeat the cause inside the outer message.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Loads the profile the flags select.
pub fn load_profile(args: &ProfileArgs) -> Result<Profile, CliError> {
    let loaded = match &args.profile_file {
        Some(path) => Profile::from_yaml_file(path),
        None => Profile::builtin(&args.profile),
    };
    loaded.map_err(|e| {
        let exit = match e {
            ProfileError::UnknownBuiltin { .. } => Exit::Usage,
            _ => Exit::BadInput,
        };
        CliError::new(exit, chain(&e))
    })
}

/// Connects to the cluster the flags select and identifies it.
pub async fn connect(args: &ClusterArgs) -> Result<Cluster, CliError> {
    connect_as(args, false).await
}

/// Connects as [`connect`] does; with `in_cluster` (hook mode), with the
/// pod's service account only, whatever kubeconfig the environment names.
pub async fn connect_as(args: &ClusterArgs, in_cluster: bool) -> Result<Cluster, CliError> {
    let options = ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        in_cluster,
        ..ConnectOptions::default()
    };
    kubesweep::cluster::connect(&options)
        .await
        .map_err(cluster_error)
}

/// Maps a connection error to its exit code.
pub fn cluster_error(e: ClusterError) -> CliError {
    let exit = match e {
        ClusterError::Forbidden { .. } => Exit::Forbidden,
        _ => Exit::Cluster,
    };
    CliError::new(exit, chain(&e))
}
