//! `kubesweep restore`: verify a backup archive completely, then recreate
//! what was removed and put back the metadata removed from kept objects.
//! Refuses a damaged archive before touching the cluster.

use std::path::Path;

use crate::args::ClusterArgs;
use crate::backup_cmd;
use crate::exit::{CliError, Exit};
use crate::session;
use kubesweep::backup::{Outcome, RestoreOptions, RestoreReport};

/// The flags of `restore`.
pub struct Options {
    /// Report only.
    pub dry_run: bool,
    /// Replace live objects with the archived ones.
    pub overwrite: bool,
    /// Allow a backup of another cluster.
    pub to_other_cluster: bool,
}

/// Runs `restore`.
pub async fn run(
    archive_path: &Path,
    cluster_args: &ClusterArgs,
    flags: &Options,
    identity: Option<&Path>,
    sha256: Option<&str>,
) -> Result<Exit, CliError> {
    // The whole archive is verified before any connection, let alone a write.
    let archive = backup_cmd::read(archive_path, identity, sha256)?;
    let cluster = session::connect(cluster_args).await?;
    let from = &archive.metadata.cluster;
    if from.kube_system_uid != cluster.identity.kube_system_uid {
        // A backup lands on the wrong cluster by a wrong context more often
        // than on purpose, and --overwrite would replace live objects there.
        if !flags.to_other_cluster {
            return Err(CliError::new(
                Exit::StalePlan,
                format!(
                    "the backup was taken on another cluster ({}, kube-system {}), not on {} (kube-system {}); \
                     nothing was changed. Pass --to-other-cluster to restore it here",
                    from.server,
                    from.kube_system_uid,
                    cluster.identity.server,
                    cluster.identity.kube_system_uid
                ),
            ));
        }
        eprintln!(
            "note: the backup was taken on another cluster ({}, kube-system {}); restoring to {} (--to-other-cluster)",
            from.server, from.kube_system_uid, cluster.identity.server
        );
    }
    let dry_run = flags.dry_run;
    let options = RestoreOptions {
        dry_run,
        overwrite: flags.overwrite,
        ..RestoreOptions::default()
    };
    let report = kubesweep::backup::restore(&cluster.client, &archive, &options)
        .await
        .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))?;
    print!("{}", render(&report, dry_run));
    Ok(if report.is_success() {
        Exit::Ok
    } else {
        Exit::Leftovers
    })
}

fn render(report: &RestoreReport, dry_run: bool) -> String {
    let mut out = String::new();
    for item in &report.items {
        out.push_str(&format!("{:<24} {}", item.outcome.label(), item.object));
        if let Outcome::Failed { message } = &item.outcome {
            out.push_str(&format!(": {message}"));
        }
        if !item.dropped_owners.is_empty() {
            out.push_str(&format!(
                " (owner references dropped, owner gone: {})",
                item.dropped_owners.join(", ")
            ));
        }
        if !item.conflicts.is_empty() {
            out.push_str(&format!(
                " (kept the live value of: {})",
                item.conflicts.join(", ")
            ));
        }
        out.push('\n');
    }
    let revived = report
        .items
        .iter()
        .filter(|i| i.was_terminating && matches!(i.outcome, Outcome::Created))
        .count();
    let failed = report.failures().count();
    out.push_str(&format!(
        "\n{}restore in {:.1}s: {} created, {} metadata put back, {} existed (left alone; --overwrite replaces), {} overwritten, {} missing, {} failed\n",
        if dry_run { "dry-run " } else { "" },
        report.duration.as_secs_f64(),
        report.count(Outcome::Created.label()) + report.count(Outcome::WouldCreate.label()),
        report.count(Outcome::PutBack.label()) + report.count(Outcome::WouldPutBack.label()),
        report.count(Outcome::Exists.label()),
        report.count(Outcome::Overwritten.label()) + report.count(Outcome::WouldOverwrite.label()),
        report.count(Outcome::Missing.label()),
        failed
    ));
    if revived > 0 {
        out.push_str(&format!(
            "{revived} objects were being deleted when backed up; they are back as live objects\n"
        ));
    }
    out
}
