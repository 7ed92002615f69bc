//! `kubesweep verify`: discover again with the profile; exit 0 when nothing of
//! the platform is left, 1 with every leftover and why.

use std::fmt::Write as _;

use crate::args::{ClusterArgs, Format, PlanFlags, ProfileArgs};
use crate::exit::{CliError, Exit};
use crate::session;
use kubesweep::cluster::Cluster;
use kubesweep::inventory::DiscoveryIssue;
use kubesweep::plan::PlanOptions;
use kubesweep::profile::Profile;
use kubesweep::verify::VerifyReport;

/// Runs `verify`.
pub async fn run(
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    flags: &PlanFlags,
    output: Format,
) -> Result<Exit, CliError> {
    let profile = session::load_profile(profile_args)?;
    let cluster = session::connect(cluster_args).await?;
    let report = verify(&cluster, &profile, &flags.options()).await?;
    match output {
        Format::Text => print!("{}", render(&report, &profile.name)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        ),
        Format::Yaml => print!(
            "{}",
            serde_saphyr::to_string(&report)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        ),
    }
    Ok(if report.is_clean() {
        Exit::Ok
    } else {
        Exit::Leftovers
    })
}

/// Verifies a connected cluster.
pub async fn verify(
    cluster: &Cluster,
    profile: &Profile,
    options: &PlanOptions,
) -> Result<VerifyReport, CliError> {
    kubesweep::verify::verify(&cluster.client, profile, &cluster.identity, options)
        .await
        .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))
}

/// Human text of a verification.
pub fn render(report: &VerifyReport, profile: &str) -> String {
    let mut out = String::new();
    if report.is_clean() {
        let _ = writeln!(out, "verify: clean: nothing of profile {profile} is left");
    } else {
        let _ = writeln!(
            out,
            "verify: {} leftover(s) of profile {profile}:",
            report.leftovers.len()
        );
        for leftover in &report.leftovers {
            let _ = writeln!(
                out,
                "  {} ({}; {})",
                leftover.target, leftover.operation, leftover.ownership
            );
            for why in &leftover.why {
                let _ = writeln!(out, "      {why}");
            }
        }
    }
    for issue in &report.issues {
        let text = match issue {
            DiscoveryIssue::ApiGroupUnavailable {
                group_version,
                message,
            } => {
                format!("API group {group_version} unavailable: {message}")
            }
            DiscoveryIssue::ListFailed {
                resource,
                namespace,
                message,
            } => match namespace {
                Some(ns) => format!("could not list {resource} in {ns}: {message}"),
                None => format!("could not list {resource}: {message}"),
            },
        };
        let _ = writeln!(out, "  note: {text}");
    }
    out
}
