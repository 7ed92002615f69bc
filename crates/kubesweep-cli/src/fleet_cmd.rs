//! `plan --members`, `apply --members`, `verify --members`: the fleet of a
//! KubeSphere host. Owns the orchestration only: finding and connecting the
//! members, one combined plan (the single-cluster plan of each cluster, each
//! with its own identity and UID preconditions), one confirmation over all
//! of it, the members executed concurrently (bounded), then the host; each
//! cluster runs the existing pipeline of `apply` (`apply_cmd::prepare` and
//! `apply_cmd::execute_prepared`). The host runs only when every member was
//! reached and ended clean, or, for unreachable members, with
//! `--skip-unreachable`.
//!
//! Members' kubeconfigs come from the host's Cluster objects and stay in
//! memory ([`kubesweep::fleet::SecretBytes`]); nothing here prints, logs or
//! saves them, and the backups (the host's holds the Cluster objects) must be
//! encrypted.

use std::path::Path;
use std::sync::Arc;

use crate::apply_cmd::{self, Prepared};
use crate::args::{
    ApplyFlags, ClusterArgs, FleetArgs, Format, LogFormat, PlanFlags, PlanOutput, ProfileArgs,
};
use crate::exit::{CliError, Exit};
use crate::hook::say;
use crate::interrupt::Interrupt;
use crate::{plan_cmd, session, verify_cmd};
use kubesweep::cluster::{Cluster, ConnectOptions};
use kubesweep::fleet::{MemberSpec, Reach};

/// A cluster of the fleet, connected.
struct Target {
    /// The member's name (its Cluster object), or the host's.
    name: String,
    /// Host or member.
    host: bool,
    cluster: Cluster,
}

/// A member not reached, and why (never the kubeconfig's content).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Left {
    name: String,
    why: String,
}

/// The host, the reachable members (in name order) and the others.
struct Fleet {
    host: Target,
    members: Vec<Target>,
    left: Vec<Left>,
}

/// Connects the host, reads its Cluster objects and connects the members,
/// at most `max` at once.
async fn gather(cluster_args: &ClusterArgs, fleet: &FleetArgs) -> Result<Fleet, CliError> {
    let host = session::connect(cluster_args).await?;
    let objects = kubesweep::fleet::list_members(&host.client)
        .await
        .map_err(|e| {
            let exit = match &e {
                kube::Error::Api(s) if s.code == 403 => Exit::Forbidden,
                _ => Exit::Cluster,
            };
            CliError::new(
                exit,
                format!(
                    "cannot list the host's clusters.cluster.kubesphere.io: {}",
                    session::chain(&e)
                ),
            )
        })?;
    let host_name = objects.host_name.clone().unwrap_or_else(|| "host".into());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(usize::from(
        fleet.max_member_concurrency,
    )));
    let mut tasks = tokio::task::JoinSet::new();
    for MemberSpec { name, reach } in objects.members {
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            let reached = match &reach {
                Reach::Unreachable(why) => Err(why.clone()),
                Reach::Direct(kubeconfig) => {
                    let _permit = semaphore.acquire().await;
                    kubesweep::fleet::connect_member(kubeconfig, &ConnectOptions::default()).await
                }
            };
            (name, reached)
        });
    }
    let mut reached = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, result) =
            joined.map_err(|e| CliError::new(Exit::Internal, format!("member task: {e}")))?;
        reached.push((name, result));
    }
    reached.sort_by(|a, b| a.0.cmp(&b.0));
    let (members, left) = sort_out(&host.identity.kube_system_uid, reached);
    Ok(Fleet {
        host: Target {
            name: host_name,
            host: true,
            cluster: host,
        },
        members,
        left,
    })
}

/// Splits connection results into members to run and members left, and
/// leaves out a member that is the host or another member again (the same
/// kube-system UID): running one cluster twice in one fleet would race.
fn sort_out(
    host_uid: &str,
    reached: Vec<(String, Result<Cluster, String>)>,
) -> (Vec<Target>, Vec<Left>) {
    let mut members: Vec<Target> = Vec::new();
    let mut left = Vec::new();
    for (name, result) in reached {
        match result {
            Err(why) => left.push(Left { name, why }),
            Ok(cluster) => {
                let uid = &cluster.identity.kube_system_uid;
                if uid == host_uid {
                    left.push(Left {
                        name,
                        why: "its kubeconfig reaches the host itself (same kube-system UID)".into(),
                    });
                } else if let Some(first) = members
                    .iter()
                    .find(|m| &m.cluster.identity.kube_system_uid == uid)
                {
                    left.push(Left {
                        why: format!(
                            "its kubeconfig reaches the same cluster as member {} (kube-system UID {uid})",
                            first.name
                        ),
                        name,
                    });
                } else {
                    members.push(Target {
                        name,
                        host: false,
                        cluster,
                    });
                }
            }
        }
    }
    (members, left)
}

fn report_left(left: &[Left], skip: bool) {
    for l in left {
        if skip {
            say!(
                "member {}: NOT cleaned, left as it is ({}); finish it later from a machine that reaches it: {}",
                l.name,
                l.why,
                kubesweep::fleet::finish_later(&l.name)
            );
        } else {
            say!("member {}: unreachable: {}", l.name, l.why);
        }
    }
}

fn unreachable_error(left: &[Left]) -> CliError {
    let names: Vec<&str> = left.iter().map(|l| l.name.as_str()).collect();
    CliError::new(
        Exit::Cluster,
        format!(
            "{} member(s) cannot be reached ({}); nothing was changed on any cluster; \
             pass --skip-unreachable to clean the others and the host anyway",
            left.len(),
            names.join(", ")
        ),
    )
}

fn heading(target: &Target) -> String {
    format!(
        "== {} {} (server {}, kube-system UID {}) ==",
        if target.host { "host" } else { "member" },
        target.name,
        target.cluster.identity.server,
        target.cluster.identity.kube_system_uid
    )
}

/// The clusters in the order they run: members (by name), then the host.
fn in_order(fleet: &Fleet) -> Vec<&Target> {
    fleet
        .members
        .iter()
        .chain(std::iter::once(&fleet.host))
        .collect()
}

/// `plan --members`.
pub async fn plan(
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    flags: &PlanFlags,
    output: &PlanOutput,
    save: Option<&Path>,
    details: bool,
    fleet_args: &FleetArgs,
) -> Result<Exit, CliError> {
    let format = match (output, save) {
        (PlanOutput::Stdout(format), None) => *format,
        _ => {
            return Err(CliError::new(
                Exit::Usage,
                "plan --members prints the combined plan (-o text|json|yaml); saving it to a file is not supported yet",
            ));
        }
    };
    let profile = session::load_profile(profile_args)?;
    let fleet = gather(cluster_args, fleet_args).await?;
    let options = flags.options();
    let mut clusters = Vec::new();
    let mut text = String::new();
    for target in in_order(&fleet) {
        let plan = plan_cmd::make_plan(&target.cluster, &profile, &options).await?;
        text.push_str(&heading(target));
        text.push('\n');
        text.push_str(&kubesweep::render::render_plan(
            &plan,
            if details {
                kubesweep::render::Detail::Details
            } else {
                kubesweep::render::Detail::Summary
            },
        ));
        clusters.push(serde_json::json!({
            "name": target.name,
            "role": if target.host { "host" } else { "member" },
            "identity": target.cluster.identity,
            "actions": plan.total_actions(),
            "plan": plan,
        }));
    }
    let unreachable: Vec<serde_json::Value> = fleet
        .left
        .iter()
        .map(|l| serde_json::json!({"name": l.name, "reason": l.why, "finishLater": kubesweep::fleet::finish_later(&l.name)}))
        .collect();
    let doc = serde_json::json!({
        "schema_version": 1,
        "kind": "FleetPlan",
        "order": "members concurrently, then the host",
        "clusters": clusters,
        "unreachable": unreachable,
    });
    match format {
        Format::Text => print!("{text}"),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&doc)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        ),
        Format::Yaml => print!(
            "{}",
            serde_saphyr::to_string(&doc)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        ),
    }
    report_left(&fleet.left, fleet_args.skip_unreachable);
    if !kubesweep::fleet::host_may_run(fleet.left.len(), fleet_args.skip_unreachable) {
        return Err(unreachable_error(&fleet.left));
    }
    Ok(Exit::Ok)
}

/// `verify --members`: every reachable cluster; exit 3 when a member could
/// not be reached (1 with --skip-unreachable: it is not known clean), 1
/// with leftovers anywhere.
pub async fn verify(
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    flags: &PlanFlags,
    output: Format,
    fleet_args: &FleetArgs,
) -> Result<Exit, CliError> {
    let profile = session::load_profile(profile_args)?;
    let fleet = gather(cluster_args, fleet_args).await?;
    let mut clean = true;
    let mut reports = Vec::new();
    for target in in_order(&fleet) {
        let report = verify_cmd::verify(&target.cluster, &profile, &flags.options()).await?;
        clean &= report.is_clean();
        if output == Format::Text {
            println!("{}", heading(target));
            print!("{}", verify_cmd::render(&report, &profile.name));
        }
        reports.push(serde_json::json!({"name": target.name, "report": report}));
    }
    if output != Format::Text {
        let doc = serde_json::json!({"clusters": reports, "unreachable": fleet.left.iter().map(|l| serde_json::json!({"name": l.name, "reason": l.why})).collect::<Vec<_>>()});
        let text = if output == Format::Json {
            serde_json::to_string_pretty(&doc)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        } else {
            serde_saphyr::to_string(&doc)
                .map_err(|e| CliError::new(Exit::Internal, e.to_string()))?
        };
        println!("{text}");
    }
    report_left(&fleet.left, fleet_args.skip_unreachable);
    if !kubesweep::fleet::host_may_run(fleet.left.len(), fleet_args.skip_unreachable) {
        return Err(unreachable_error(&fleet.left));
    }
    Ok(if clean && fleet.left.is_empty() {
        Exit::Ok
    } else {
        Exit::Leftovers
    })
}

/// The blast-radius guard over the combined plan: one total.
fn blast_radius(totals: &[(String, usize)], flags: &ApplyFlags) -> Result<String, CliError> {
    let total: usize = totals.iter().map(|(_, n)| n).sum();
    let per_cluster: Vec<String> = totals.iter().map(|(n, a)| format!("{n}: {a}")).collect();
    let summary = format!(
        "{total} actions on {} cluster(s) ({})",
        totals.len(),
        per_cluster.join(", ")
    );
    if total > flags.max_actions && !flags.allow_large {
        return Err(CliError::new(
            Exit::Refused,
            format!(
                "the fleet plan touches {summary}, more than --max-actions {}; review it with \
                 `kubesweep plan --members --details` and pass --allow-large to go ahead",
                flags.max_actions
            ),
        ));
    }
    Ok(summary)
}

/// One confirmation for the whole fleet.
fn confirm(summary: &str, flags: &ApplyFlags) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if flags.yes {
        say!("applying to the fleet: {summary}");
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            Exit::Refused,
            format!(
                "refusing to apply without confirmation ({summary}); no terminal to ask on, pass --yes"
            ),
        ));
    }
    eprint!("About to remove the platform from the fleet: {summary}.\nType 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::new(Exit::Refused, format!("failed to read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Refused,
            "not confirmed; nothing was changed",
        ))
    }
}

/// The flags one cluster's run gets: already confirmed (once, for the
/// fleet), its own backup directory named by cluster name and identity.
fn cluster_flags(flags: &ApplyFlags, target: &Target) -> ApplyFlags {
    let mut own = flags.clone();
    own.yes = true;
    own.allow_large = true;
    own.backup.backup_dir = flags.backup.backup_dir.join(format!(
        "{}-{}",
        target.name, target.cluster.identity.kube_system_uid
    ));
    own
}

/// The exit of the fleet from the members' and the host's: the first member
/// that failed (the host did not run), else the host's, else 1 when members
/// were left behind.
fn fleet_exit(members: &[(String, Exit)], host: Option<Exit>, left: usize) -> Exit {
    if let Some((_, exit)) = members.iter().find(|(_, e)| *e != Exit::Ok) {
        return *exit;
    }
    match host {
        Some(exit) if exit != Exit::Ok => exit,
        _ if left > 0 => Exit::Leftovers,
        _ => Exit::Ok,
    }
}

/// `apply --members`.
pub async fn apply(
    plan_file: Option<&Path>,
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    plan_flags: &PlanFlags,
    flags: &ApplyFlags,
    fleet_args: &FleetArgs,
    log_format: LogFormat,
) -> Result<Exit, CliError> {
    if plan_file.is_some() || flags.hook {
        return Err(CliError::new(
            Exit::Usage,
            "apply --members plans now; a saved plan file and --hook are single-cluster only",
        ));
    }
    if !flags.backup.no_backup && flags.backup.encrypt_to.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            "apply --members backs up the host's Cluster objects, which hold the members' kubeconfigs: \
             pass --encrypt-to RECIPIENT (or --no-backup)",
        ));
    }
    let profile = Arc::new(session::load_profile(profile_args)?);
    let options = plan_flags.options();
    let interrupt = Interrupt::install();
    kubesweep::retry::set_outage_budget(std::time::Duration::from_secs(
        flags.api_outage_timeout_secs,
    ));
    let fleet = gather(cluster_args, fleet_args).await?;
    report_left(&fleet.left, fleet_args.skip_unreachable);
    if !kubesweep::fleet::host_may_run(fleet.left.len(), fleet_args.skip_unreachable) {
        return Err(unreachable_error(&fleet.left));
    }

    // Every cluster through discovery, planning and preflight before the
    // one confirmation and before any change anywhere.
    let mut prepared: Vec<(String, ApplyFlags, Prepared)> = Vec::new();
    let mut totals = Vec::new();
    for target in in_order(&fleet) {
        let own = cluster_flags(flags, target);
        let ready = apply_cmd::prepare(target.cluster.clone(), &profile, &options, None, &own)
            .await
            .map_err(|e| CliError::new(e.exit, format!("{}: {}", target.name, e.message)))?;
        eprintln!("{}", heading(target));
        eprint!(
            "{}",
            kubesweep::render::render_plan(&ready.plan, kubesweep::render::Detail::Summary)
        );
        totals.push((target.name.clone(), ready.plan.total_actions()));
        prepared.push((target.name.clone(), own, ready));
    }
    let summary = blast_radius(&totals, flags)?;
    confirm(&summary, flags)?;

    let host = prepared.pop().expect("the host is always last");
    // Not spawned: a run's future holds the backup's age recipients, which
    // are not Sync; the runs interleave on this task, bounded.
    use futures::StreamExt as _;
    let (profile_ref, options_ref, interrupt_ref) = (&profile, &options, &interrupt);
    let mut results: Vec<(String, (Exit, String))> =
        futures::stream::iter(prepared.into_iter().map(|(name, own, ready)| async move {
            say!("member {name}: applying");
            let result = apply_cmd::execute_prepared(
                ready,
                profile_ref,
                options_ref,
                &own,
                log_format,
                interrupt_ref,
            )
            .await;
            let result = match result {
                Ok(exit) => (exit, format!("exit {}", exit as u8)),
                Err(e) => (e.exit, format!("exit {}: {}", e.exit as u8, e.message)),
            };
            (name, result)
        }))
        .buffer_unordered(usize::from(fleet_args.max_member_concurrency))
        .collect()
        .await;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failed = false;
    for (name, (exit, why)) in &results {
        if *exit == Exit::Ok {
            say!("member {name}: clean");
        } else {
            failed = true;
            say!("member {name}: NOT clean ({why}); the host was not started");
        }
    }
    let members: Vec<(String, Exit)> = results.into_iter().map(|(n, (e, _))| (n, e)).collect();
    if failed {
        let exit = fleet_exit(&members, None, fleet.left.len());
        return Err(CliError::new(
            exit,
            "a member did not end clean; nothing was changed on the host; \
             fix it and run `kubesweep apply --members` again",
        ));
    }
    let (host_name, own, ready) = host;
    say!("host {host_name}: applying");
    let host_result =
        apply_cmd::execute_prepared(ready, &profile, &options, &own, log_format, &interrupt).await;
    let host_outcome = match &host_result {
        Ok(exit) => *exit,
        Err(e) => e.exit,
    };
    if host_outcome == Exit::Ok {
        say!("host {host_name}: clean");
    } else {
        say!("host {host_name}: NOT clean (exit {})", host_outcome as u8);
    }
    report_left(&fleet.left, true);
    let exit = fleet_exit(&members, Some(host_outcome), fleet.left.len());
    match host_result {
        Err(e) => Err(e),
        Ok(_) => Ok(exit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(max: usize, allow: bool) -> ApplyFlags {
        use clap::Parser;
        let crate::args::Command::Apply { mut flags, .. } =
            crate::args::Cli::parse_from(["kubesweep", "apply"]).command
        else {
            panic!("not apply");
        };
        flags.max_actions = max;
        flags.allow_large = allow;
        flags
    }

    #[test]
    fn blast_radius_counts_the_whole_fleet() {
        let totals = vec![
            ("m1".to_owned(), 600),
            ("m2".to_owned(), 600),
            ("host".to_owned(), 900),
        ];
        let err = blast_radius(&totals, &flags(2000, false)).expect_err("refused");
        assert_eq!(err.exit, Exit::Refused);
        assert!(
            err.message
                .contains("2100 actions on 3 cluster(s) (m1: 600, m2: 600, host: 900)")
        );
        assert!(blast_radius(&totals, &flags(2000, true)).is_ok());
        assert!(blast_radius(&totals, &flags(2100, false)).is_ok());
    }

    #[test]
    fn a_failed_member_decides_the_exit_before_the_host() {
        let ok = |n: &str| (n.to_owned(), Exit::Ok);
        assert_eq!(fleet_exit(&[ok("a"), ok("b")], Some(Exit::Ok), 0), Exit::Ok);
        assert_eq!(fleet_exit(&[ok("a")], Some(Exit::Ok), 1), Exit::Leftovers);
        assert_eq!(
            fleet_exit(&[ok("a"), ("b".into(), Exit::StalePlan)], None, 0),
            Exit::StalePlan
        );
        assert_eq!(
            fleet_exit(&[ok("a")], Some(Exit::Forbidden), 0),
            Exit::Forbidden
        );
    }

    #[test]
    fn unreachable_error_names_members_and_says_nothing_changed() {
        let e = unreachable_error(&[Left {
            name: "m2".into(),
            why: "connection type proxy".into(),
        }]);
        assert_eq!(e.exit, Exit::Cluster);
        assert!(e.message.contains("m2") && e.message.contains("nothing was changed"));
    }
}
