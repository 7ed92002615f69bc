//! `kubesweep apply`: execute a plan (a saved one, or one made now) after the
//! checks that keep it safe: the plan fits this cluster and is not stale, the
//! credentials may do everything it needs, the platform's controllers are not
//! running, the blast radius is confirmed, and a human (or `--yes`) agreed.
//! Ends with a verification.

use std::io::{BufRead, IsTerminal, Write};

use crate::args::{ApplyFlags, ClusterArgs, LogFormat, PlanFlags, ProfileArgs};
use crate::audit::Audit;
use crate::exit::{CliError, Exit};
use crate::hook::say;
use crate::interrupt::Interrupt;
use crate::{backup_cmd, hook, plan_cmd, progress, session, verify_cmd};
use kubesweep::cluster::Cluster;
use kubesweep::execute::{ExecuteOptions, ExecutionReport, Progress};
use kubesweep::handover::HeldRecords;
use kubesweep::plan::Plan;
use kubesweep::preflight::RunningController;
use kubesweep::profile::Profile;

/// Runs `apply`.
pub async fn run(
    plan_file: Option<&std::path::Path>,
    cluster_args: &ClusterArgs,
    profile_args: &ProfileArgs,
    plan_flags: &PlanFlags,
    flags: &ApplyFlags,
    log_format: LogFormat,
) -> Result<Exit, CliError> {
    // Inputs first: a malformed file is reported before any connection.
    let saved = plan_file.map(plan_cmd::load_plan).transpose()?;
    let profile = match &saved {
        Some(plan) if profile_args.profile_file.is_none() => session::load_profile(&ProfileArgs {
            profile: plan.profile.clone(),
            profile_file: None,
        })?,
        _ => session::load_profile(profile_args)?,
    };
    if let Some(plan) = &saved
        && plan.profile != profile.name
    {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "the plan was made with profile {}, not {}",
                plan.profile, profile.name
            ),
        ));
    }
    let mut options = match &saved {
        Some(plan) => plan.options.clone(),
        None => plan_flags.options(),
    };
    // The release whose uninstall runs the hook is Helm's to finish.
    options.leave_uninstalling_records |= flags.hook;

    // Signals end the process at once until the backup starts; from then on
    // they stop the run cooperatively (see `interrupt`).
    let interrupt = Interrupt::install();
    kubesweep::retry::set_outage_budget(std::time::Duration::from_secs(
        flags.api_outage_timeout_secs,
    ));

    let cluster = session::connect_as(cluster_args, flags.hook).await?;
    let prepared = prepare(cluster, &profile, &options, saved, flags).await?;
    if prepared.plan.is_empty() {
        say!(
            "nothing to do: no object of profile {} is left on {}",
            profile.name,
            prepared.cluster.identity.server
        );
        return finish_with_verify(&prepared.cluster, &profile, &options, None, &[]).await;
    }
    confirm(&prepared.cluster, &prepared.plan, flags)?;
    execute_prepared(prepared, &profile, &options, flags, log_format, &interrupt).await
}

/// A cluster ready for its confirmation: discovered, planned (or its saved
/// plan checked against it), and through preflight. Nothing was changed.
pub struct Prepared {
    /// The connected cluster.
    pub cluster: Cluster,
    /// What discovery found.
    pub inventory: kubesweep::inventory::Inventory,
    /// The plan to confirm.
    pub plan: Plan,
    /// Platform controllers found running (to stop, with --stop-controllers).
    pub running: Vec<RunningController>,
    /// The API catalog's documents, for the re-plan before the first change.
    pub catalog: kubesweep::discover::CatalogCache,
}

/// Discovers, plans (or checks `saved` against this cluster: its identity
/// and the UIDs it names) and runs preflight; changes nothing.
pub async fn prepare(
    cluster: Cluster,
    profile: &Profile,
    options: &kubesweep::plan::PlanOptions,
    saved: Option<Plan>,
    flags: &ApplyFlags,
) -> Result<Prepared, CliError> {
    let mut catalog = kubesweep::discover::CatalogCache::default();
    let inventory = kubesweep::discover::discover_cached(
        &cluster.client,
        profile,
        &cluster.identity,
        &mut catalog,
    )
    .await
    .map_err(plan_cmd::discover_error)?;
    kubesweep::memory::log_stage("discovered");
    let plan = match saved {
        Some(plan) => {
            kubesweep::staleness::check_plan(&plan, &cluster.identity, &inventory)
                .map_err(|e| CliError::new(Exit::StalePlan, e.to_string()))?;
            plan
        }
        None => kubesweep::plan::plan(profile, &inventory, options),
    };
    let running = if plan.is_empty() {
        Vec::new()
    } else {
        preflight(&cluster, profile, &inventory, &plan, flags).await?
    };
    Ok(Prepared {
        cluster,
        inventory,
        plan,
        running,
        catalog,
    })
}

/// Everything after the confirmation: the backup, the re-plan before the
/// first change, the execution, the verification; the audit record.
pub async fn execute_prepared(
    prepared: Prepared,
    profile: &Profile,
    options: &kubesweep::plan::PlanOptions,
    flags: &ApplyFlags,
    log_format: LogFormat,
    interrupt: &Interrupt,
) -> Result<Exit, CliError> {
    let Prepared {
        cluster,
        inventory,
        plan,
        running,
        mut catalog,
    } = prepared;
    if plan.is_empty() {
        return finish_with_verify(&cluster, profile, options, None, &[]).await;
    }
    // Nothing is mutated before the backup is written and verified, not even
    // the controllers' replica counts. An interrupt drops the backup whole
    // (its temporary file goes with it) or lets it finish, never half.
    interrupt.writing(&flags.backup.backup_dir);
    let backup = interrupt
        .before_changes(backup_cmd::before_apply(
            &cluster,
            &plan,
            inventory,
            &flags.backup,
        ))
        .await?;
    // The backup consumed the inventory (the re-plan reads a fresh one:
    // both at once would double the peak memory of a large cluster).
    let confirmed = plan;
    let plan = interrupt
        .before_changes(still_confirmed(
            &cluster,
            profile,
            &confirmed,
            options,
            &mut catalog,
        ))
        .await?;
    drop(confirmed);

    if flags.hook
        && let Some(b) = &backup
    {
        backup_cmd::keep_in_cluster(&cluster, b).await?;
    }
    // Hook mode: the namespaces holding the records Helm purges are not
    // waited for; they go after this process, once Helm has purged them.
    let held = held_records(&plan);
    let execute_options = ExecuteOptions {
        max_in_flight: usize::from(flags.max_in_flight),
        wait_timeout: std::time::Duration::from_secs(flags.wait_timeout_secs),
        keep_going: flags.keep_going,
        cancel: interrupt.cancel().clone(),
        not_waited_for: held.iter().map(|h| h.namespace_uid.clone()).collect(),
        // Not in hook mode: its generated role grants the plan's requests,
        // not deletions of every type inside the platform namespaces.
        namespace_fast_path: flags.namespace_wait == crate::args::NamespaceWait::Fast
            && !flags.hook,
        ..ExecuteOptions::default()
    };
    let bars;
    let lines = progress::Lines;
    let display: &dyn Progress = if std::io::stderr().is_terminal() && log_format == LogFormat::Text
    {
        bars = progress::Bars::new();
        &bars
    } else {
        &lines
    };
    // The audit record goes next to the backup (or where it would have gone).
    let audit_dir = backup
        .as_ref()
        .and_then(|b| b.path.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| flags.backup.backup_dir.clone());
    let audit = Audit::create(&audit_dir, &plan, display)?;
    say!("audit record: {}", audit.path().display());
    interrupt.set_undo_hints(
        running
            .iter()
            .map(kubesweep::preflight::scale_back_command)
            .collect(),
    );
    let outcome = change(
        &cluster,
        profile,
        options,
        &plan,
        &running,
        flags,
        &execute_options,
        &audit,
        &held,
    )
    .await;
    // A run that did not end clean must not leave the platform half
    // stopped: scale the controllers back (an interrupt included).
    if !matches!(outcome, Ok(Exit::Ok)) {
        restart_controllers(&cluster, &running, &audit).await;
    }
    interrupt.set_undo_hints(Vec::new());
    audit.finish()?;
    say!("audit record of every write: {}", audit.path().display());
    outcome
}

/// The part of `apply` that changes the cluster: stop the controllers, run
/// the plan, verify.
#[allow(clippy::too_many_arguments)]
async fn change(
    cluster: &Cluster,
    profile: &Profile,
    options: &kubesweep::plan::PlanOptions,
    plan: &Plan,
    running: &[RunningController],
    flags: &ApplyFlags,
    execute_options: &ExecuteOptions,
    audit: &Audit<'_>,
    held: &[HeldRecords],
) -> Result<Exit, CliError> {
    // managedFields written from here on, by anyone but kubesweep, are
    // changes made while the run was going.
    let started = k8s_openapi::jiff::Timestamp::now();
    stop_controllers(cluster, running, flags, audit).await?;
    for h in held {
        protect_records(cluster, h, audit).await?;
    }
    let report = kubesweep::execute::execute(&cluster.client, plan, execute_options, audit)
        .await
        .map_err(|e| CliError::new(Exit::StalePlan, session::chain(&e)))?;
    kubesweep::memory::log_stage("executed");
    print_report(&report);
    summarise_report(&report);
    if let Some(denied) = &report.permission_denied {
        // No verification: it needs the permissions that were just taken away.
        let not_started = plan.total_actions().saturating_sub(report.counts.total);
        return Err(CliError::new(
            Exit::Forbidden,
            format!(
                "permission denied during the run (context {}; the preflight check had passed): {denied}; \
                 {} action(s) ran ({} failed), {not_started} not started; \
                 restore the permission and run `kubesweep apply` again",
                cluster
                    .identity
                    .context
                    .as_deref()
                    .unwrap_or("(in-cluster)"),
                report.counts.total,
                report.counts.failed
            ),
        ));
    }
    if execute_options.cancel.is_cancelled() {
        let not_started = plan.total_actions().saturating_sub(report.counts.total);
        return Err(CliError::new(
            Exit::Interrupted,
            format!(
                "interrupted: {} action(s) ran ({} failed), {not_started} not started; \
                 run `kubesweep apply` again to finish",
                report.counts.total, report.counts.failed
            ),
        ));
    }
    finish_with_verify(cluster, profile, options, Some((&report, started)), held).await
}

/// The records hook mode leaves for Helm, with the UID of their namespace,
/// for each namespace the plan deletes (a kept namespace needs no guard).
fn held_records(plan: &Plan) -> Vec<HeldRecords> {
    plan.findings
        .iter()
        .filter_map(|f| match f {
            kubesweep::plan::Finding::LeftForHelm {
                release,
                namespace,
                resource,
                records,
            } => {
                let deleted = plan
                    .phase(kubesweep::plan::PhaseId::Namespaces)?
                    .actions
                    .iter()
                    .find(|a| {
                        a.operation.deletes()
                            && a.target.resource.kind == "Namespace"
                            && &a.target.name == namespace
                    })?;
                Some(HeldRecords {
                    release: release.clone(),
                    namespace: namespace.clone(),
                    namespace_uid: deleted.target.uid.clone(),
                    resource: resource.clone(),
                    records: records.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Creates the policy that keeps the namespace controller from the
/// records (see `kubesweep::handover`), audited, and waits until it is
/// enforced; before any action of the plan runs.
async fn protect_records(
    cluster: &Cluster,
    held: &HeldRecords,
    audit: &Audit<'_>,
) -> Result<(), CliError> {
    let result =
        kubesweep::handover::protect(&cluster.client, held, std::time::Duration::from_secs(30))
            .await;
    let reason = format!(
        "keeps the records of helm release {} (being uninstalled by Helm) from the namespace controller while namespace {} is deleted; owned by that namespace",
        held.release, held.namespace
    );
    match result {
        Ok(protected) => {
            for (kind, name, uid, created) in protected.objects {
                audit.record(serde_json::json!({
                    "phase": "hand-over",
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": kind,
                    "name": name,
                    "uid": uid,
                    "operation": {"type": "create"},
                    "reason": reason,
                    "result": if created { "done" } else { "already there" },
                }));
            }
            say!(
                "records of helm release {} left for Helm: {} {}/{} (ValidatingAdmissionPolicy {} keeps them from the namespace controller)",
                held.release,
                held.resource,
                held.namespace,
                held.records.join(", "),
                held.policy_name()
            );
            Ok(())
        }
        Err(e) => {
            audit.record(serde_json::json!({
                "phase": "hand-over",
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "name": held.policy_name(),
                "operation": {"type": "create"},
                "reason": reason,
                "result": "failed",
            }));
            Err(CliError::new(
                Exit::Leftovers,
                format!(
                    "could not protect the records of helm release {} before deleting namespace {}; no action of the plan ran: {}",
                    held.release,
                    held.namespace,
                    session::chain(&e)
                ),
            ))
        }
    }
}

/// The run's counts and first failures, for hook mode's summary.
fn summarise_report(report: &ExecutionReport) {
    let c = &report.counts;
    hook::summarise(format!(
        "applied in {:.1}s: {} done, {} already gone, {} skipped, {} failed",
        report.duration_ms as f64 / 1000.0,
        c.done,
        c.already_gone,
        c.skipped + c.skipped_stale,
        c.failed
    ));
    for failure in report.failures().take(hook::FAILURES_NAMED) {
        let why = match &failure.outcome {
            kubesweep::execute::Outcome::Failed { message } => message.clone(),
            other => format!("{other:?}"),
        };
        hook::summarise(format!(
            "failed: {} ({}): {why}",
            failure.target, failure.operation
        ));
    }
    if c.failed > hook::FAILURES_NAMED {
        hook::summarise(format!(
            "... and {} more failures (see the audit record and the log)",
            c.failed - hook::FAILURES_NAMED
        ));
    }
    if let Some(stopped) = &report.stopped {
        hook::summarise(format!(
            "stopped after {}: {}",
            stopped.after.title(),
            stopped.reason
        ));
    }
}

/// Scales the controllers `--stop-controllers` stopped back to their replica
/// counts; when that fails, prints the commands that do it.
async fn restart_controllers(cluster: &Cluster, running: &[RunningController], audit: &Audit<'_>) {
    if running.is_empty() {
        return;
    }
    say!(
        "scaling platform controllers back up: {}",
        controller_names(running).join(", ")
    );
    let failed = kubesweep::preflight::restore_controllers(&cluster.client, running).await;
    for c in running {
        record_controller(
            audit,
            c,
            serde_json::json!({"type": "scaleBack", "replicas": c.replicas}),
            "the run did not end clean; the controllers --stop-controllers stopped run again",
            failed.iter().any(|(f, _)| f.uid == c.uid),
        );
    }
    for (c, why) in &failed {
        say!(
            "kubesweep: could not scale deployment {}/{} back ({why}); run: {}",
            c.namespace,
            c.name,
            kubesweep::preflight::scale_back_command(c)
        );
    }
}

/// Refuses before any change when the credentials lack a permission the plan
/// needs, or when the platform's controllers still run (they would recreate
/// or re-finalize what is removed) and `--stop-controllers` was not given.
/// Returns the controllers to stop once the backup is written.
async fn preflight(
    cluster: &Cluster,
    profile: &Profile,
    inventory: &kubesweep::inventory::Inventory,
    plan: &Plan,
    flags: &ApplyFlags,
) -> Result<Vec<RunningController>, CliError> {
    let mut required = kubesweep::preflight::run_permissions(profile, inventory, plan);
    if flags.hook {
        required.extend(held_records(plan).iter().flat_map(handover_permissions));
        if !flags.backup.no_backup && !flags.backup.encrypt_to.is_empty() {
            required.extend(stored_backup_permissions());
        }
    }
    let missing = kubesweep::preflight::missing_permissions(&cluster.client, &required)
        .await
        .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))?;
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| m.permission.to_string()).collect();
        return Err(CliError::new(
            Exit::Forbidden,
            format!(
                "the credentials of context {} lack {} permission(s) the plan needs; nothing was changed: {}",
                cluster
                    .identity
                    .context
                    .as_deref()
                    .unwrap_or("(in-cluster)"),
                list.len(),
                list.join("; ")
            ),
        ));
    }
    // Discovery read these Deployments moments ago; ask again only if it could not.
    let running = match kubesweep::preflight::running_controllers_in(profile, inventory) {
        Some(running) => running,
        None => kubesweep::preflight::running_controllers(&cluster.client, profile)
            .await
            .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))?,
    };
    // A live platform's controllers are the first thing the plan deletes
    // (foreground, waiting for their pods): nothing to stop beforehand.
    let (stopped_by_plan, running) = kubesweep::preflight::stopped_by_plan(plan, running);
    if !stopped_by_plan.is_empty() {
        say!(
            "platform controllers run; the plan deletes them first and waits for their pods: {}",
            controller_names(&stopped_by_plan).join(", ")
        );
    }
    if running.is_empty() || flags.force {
        return Ok(Vec::new());
    }
    if !flags.stop_controllers {
        return Err(CliError::new(
            Exit::Refused,
            format!(
                "platform controllers still run ({}); they would undo the cleanup. \
                 Pass --stop-controllers to scale them to zero first, or --force",
                controller_names(&running).join(", ")
            ),
        ));
    }
    Ok(running)
}

/// What the hand-over to Helm needs besides the plan: creating (and on a
/// re-run reading) the policy and its binding, and the dry-run collection
/// delete that proves it is enforced. Not in `kubesweep profiles rbac`'s
/// role, which has no `create`: the chart adds them in hook mode.
fn handover_permissions(held: &HeldRecords) -> Vec<kubesweep::preflight::Permission> {
    let permission = |verb: &str, group: &str, resource: &str, namespace: Option<&str>| {
        kubesweep::preflight::Permission {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(str::to_owned),
        }
    };
    let mut out = Vec::new();
    for resource in [
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ] {
        // `get` reads them back when a re-run finds them created.
        for verb in ["create", "get"] {
            out.push(permission(
                verb,
                "admissionregistration.k8s.io",
                resource,
                None,
            ));
        }
    }
    out.push(permission(
        "deletecollection",
        "",
        &held.resource,
        Some(&held.namespace),
    ));
    out
}

/// What keeping the encrypted backup in the cluster needs.
fn stored_backup_permissions() -> Vec<kubesweep::preflight::Permission> {
    let namespace = kubesweep::backup::stored::BACKUP_NAMESPACE;
    [
        ("create", "namespaces", None),
        ("create", "secrets", Some(namespace)),
        ("list", "secrets", Some(namespace)),
    ]
    .into_iter()
    .map(|(verb, resource, ns)| kubesweep::preflight::Permission {
        verb: verb.into(),
        group: String::new(),
        resource: resource.into(),
        subresource: None,
        namespace: ns.map(str::to_owned),
    })
    .collect()
}

fn controller_names(running: &[RunningController]) -> Vec<String> {
    running
        .iter()
        .map(|c| {
            format!(
                "deployment {}/{} ({} replicas)",
                c.namespace, c.name, c.replicas
            )
        })
        .collect()
}

/// Discovers and plans again, after the confirmation and the backup and
/// right before the first change, and returns what may run: the fresh plan,
/// when it does nothing the confirmed one did not (exit 6 otherwise). A
/// prompt may wait for hours, a saved plan for days: in between a user may
/// have made a project in a Workspace that had none, or edited the file.
/// Everything is read again; of the API catalog, only group-version
/// documents no CRD or APIService change can have touched are reused from
/// the first discovery (`catalog`).
async fn still_confirmed(
    cluster: &Cluster,
    profile: &Profile,
    confirmed: &Plan,
    options: &kubesweep::plan::PlanOptions,
    catalog: &mut kubesweep::discover::CatalogCache,
) -> Result<Plan, CliError> {
    let inventory =
        kubesweep::discover::discover_cached(&cluster.client, profile, &cluster.identity, catalog)
            .await
            .map_err(|e| CliError::new(Exit::Cluster, session::chain(&e)))?;
    let fresh = kubesweep::plan::plan(profile, &inventory, options);
    kubesweep::memory::log_stage("re-planned");
    let (run, dropped) = kubesweep::plan::reconcile(confirmed, &fresh)
        .map_err(|e| CliError::new(Exit::StalePlan, e.to_string()))?;
    if dropped > 0 {
        say!(
            "{dropped} confirmed action(s) left out: their objects are gone, or no longer proven the platform's"
        );
    }
    Ok(run)
}

/// Scales the running controllers to zero (`--stop-controllers`) and waits for their pods.
async fn stop_controllers(
    cluster: &Cluster,
    running: &[RunningController],
    flags: &ApplyFlags,
    audit: &Audit<'_>,
) -> Result<(), CliError> {
    if running.is_empty() {
        return Ok(());
    }
    say!(
        "stopping platform controllers: {}",
        controller_names(running).join(", ")
    );
    let timeout = std::time::Duration::from_secs(flags.wait_timeout_secs);
    let report = kubesweep::preflight::stop_controllers(&cluster.client, running, timeout).await;
    for c in running {
        record_controller(
            audit,
            c,
            serde_json::json!({"type": "scaleToZero", "replicasBefore": c.replicas}),
            "platform controller running outside a release the plan removes (--stop-controllers)",
            report.not_stopped.iter().any(|(n, _)| n.contains(&c.name)),
        );
    }
    if report.all_stopped() {
        Ok(())
    } else {
        let why: Vec<String> = report
            .not_stopped
            .iter()
            .map(|(name, why)| format!("{name}: {why}"))
            .collect();
        Err(CliError::new(
            Exit::Refused,
            format!(
                "platform controllers could not be stopped: {}",
                why.join("; ")
            ),
        ))
    }
}

/// The blast-radius guard and the human confirmation.
fn confirm(cluster: &Cluster, plan: &Plan, flags: &ApplyFlags) -> Result<(), CliError> {
    let total = plan.total_actions();
    if total > flags.max_actions && !flags.allow_large {
        return Err(CliError::new(
            Exit::Refused,
            format!(
                "the plan touches {total} objects, more than --max-actions {}; review it with \
                 `kubesweep plan --details` and pass --allow-large to go ahead",
                flags.max_actions
            ),
        ));
    }
    let summary = format!(
        "context {}, server {}: {} actions ({} deletes, {} metadata cleanups), {} destroy data",
        cluster
            .identity
            .context
            .as_deref()
            .unwrap_or("(in-cluster)"),
        cluster.identity.server,
        total,
        plan.counts.deletes,
        plan.counts.metadata_strips,
        plan.counts.destroying_data,
    );
    if flags.yes || flags.hook {
        say!("applying: {summary}");
        hook::summarise(format!("plan: {summary}"));
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
    eprint!(
        "{}\nAbout to remove profile {} from {summary}.\nType 'yes' to continue: ",
        kubesweep::render::render_plan(plan, kubesweep::render::Detail::Summary),
        plan.profile
    );
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

fn print_report(report: &ExecutionReport) {
    let c = &report.counts;
    say!(
        "applied in {:.1}s: {} done, {} already gone, {} skipped (re-created since planning: {}), {} failed",
        report.duration_ms as f64 / 1000.0,
        c.done,
        c.already_gone,
        c.skipped + c.skipped_stale,
        c.skipped_stale,
        c.failed
    );
    for failure in report.failures() {
        let why = match &failure.outcome {
            kubesweep::execute::Outcome::Failed { message } => message.clone(),
            other => format!("{other:?}"),
        };
        say!(
            "  failed: {} ({}): {why}",
            failure.target,
            failure.operation
        );
    }
    for (webhook, blocked) in blocked_by_webhooks(report) {
        say!(
            "  blocked by admission webhook \"{webhook}\" (it refused them or could not be called; \
             kubesweep removes only the platform's webhooks): {} action(s): {}",
            blocked.len(),
            blocked.join(", ")
        );
    }
    for phase in &report.phases {
        if let Some(wait) = &phase.wait
            && wait.timed_out
        {
            for remaining in &wait.remaining {
                say!(
                    "  still present after {}: {} ({})",
                    phase.id.title(),
                    remaining.target,
                    remaining.reasons.join("; ")
                );
            }
        }
    }
    if let Some(stopped) = &report.stopped {
        say!(
            "  stopped after {}: {}",
            stopped.after.title(),
            stopped.reason
        );
    }
}

/// The failed actions grouped by the admission webhook their error names
/// (`failed calling webhook "NAME"`, `admission webhook "NAME" denied`),
/// each as `OPERATION TARGET`, webhooks in name order.
fn blocked_by_webhooks(report: &ExecutionReport) -> Vec<(String, Vec<String>)> {
    let mut by_webhook: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for failure in report.failures() {
        let kubesweep::execute::Outcome::Failed { message } = &failure.outcome else {
            continue;
        };
        if let Some(webhook) = webhook_named(message) {
            by_webhook
                .entry(webhook.to_owned())
                .or_default()
                .push(format!("{} {}", failure.operation, failure.target));
        }
    }
    by_webhook.into_iter().collect()
}

/// The webhook an API server's admission error names, if it is one.
fn webhook_named(message: &str) -> Option<&str> {
    ["failed calling webhook \"", "admission webhook \""]
        .iter()
        .find_map(|prefix| {
            let rest = &message[message.find(prefix)? + prefix.len()..];
            rest.split_once('"').map(|(name, _)| name)
        })
}

/// The closing verification; after a run (`report` and when it started),
/// also who changed the leftovers while it ran.
async fn finish_with_verify(
    cluster: &Cluster,
    profile: &Profile,
    options: &kubesweep::plan::PlanOptions,
    report: Option<(&ExecutionReport, k8s_openapi::jiff::Timestamp)>,
    held: &[HeldRecords],
) -> Result<Exit, CliError> {
    let mut verification = verify_cmd::verify(cluster, profile, options).await?;
    kubesweep::memory::log_stage("verified");
    // A namespace handed to Helm stays Terminating until Helm purges the
    // records it holds: not a leftover of this run.
    verification
        .leftovers
        .retain(|l| !held.iter().any(|h| h.namespace_uid == l.target.uid));
    print!("{}", verify_cmd::render(&verification, &profile.name));
    if let Some((report, started)) = report {
        print!("{}", changed_during(&verification, report, started));
    }
    let ok = verification.is_clean() && report.is_none_or(|(r, _)| r.is_success());
    summarise_verify(&verification, held);
    Ok(if ok { Exit::Ok } else { Exit::Leftovers })
}

/// The verdict of the closing verify and what Helm still has to do, for
/// hook mode's summary.
fn summarise_verify(verification: &kubesweep::verify::VerifyReport, held: &[HeldRecords]) {
    if verification.is_clean() {
        hook::summarise("verify: clean");
    } else {
        hook::summarise(format!(
            "verify: {} leftover(s)",
            verification.leftovers.len()
        ));
        for l in verification.leftovers.iter().take(hook::FAILURES_NAMED) {
            hook::summarise(format!("  left: {} ({})", l.target, l.operation));
        }
    }
    for h in held {
        hook::summarise(format!(
            "namespace {ns} is Terminating and holds only what Helm purges ({resource} {records}); it goes once Helm has deleted them, and ValidatingAdmissionPolicy {policy} with its binding go with it. After `helm uninstall --keep-history` the records stay: run `kubectl delete {resource} -n {ns} {records}` to finish",
            ns = h.namespace,
            resource = h.resource,
            records = h.records.join(" "),
            policy = h.policy_name(),
        ));
    }
}

/// The leftovers someone other than kubesweep wrote since the run started
/// (their `managedFields`), each with what the run had done to it and the
/// field managers that wrote it: a platform controller that still runs,
/// outside any Deployment the preflight check knows, re-creating or
/// re-finalizing what the run removed.
fn changed_during(
    verification: &kubesweep::verify::VerifyReport,
    report: &ExecutionReport,
    started: k8s_openapi::jiff::Timestamp,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut named = std::collections::HashSet::new();
    for leftover in &verification.leftovers {
        let writers = leftover.written_since(started);
        // One line per object, whatever number of actions a new run would take on it.
        if writers.is_empty() || !named.insert(leftover.target.uid.as_str()) {
            continue;
        }
        let t = &leftover.target;
        let acted = report.phases.iter().flat_map(|p| &p.actions).find(|a| {
            a.target.resource == t.resource
                && a.target.namespace == t.namespace
                && a.target.name == t.name
                && matches!(a.outcome, kubesweep::execute::Outcome::Done { .. })
        });
        let what = match acted {
            Some(a) if a.target.uid != t.uid => {
                format!("re-created after this run did {}", a.operation)
            }
            Some(a) => format!("changed again after this run did {}", a.operation),
            None => "changed while this run went on".to_owned(),
        };
        let who: Vec<String> = writers
            .iter()
            .map(|w| match &w.time {
                Some(time) => format!("{} ({} at {})", w.manager, w.operation, time.0),
                None => format!("{} ({})", w.manager, w.operation),
            })
            .collect();
        if out.is_empty() {
            let _ = writeln!(
                out,
                "changed during this run by other writers (a platform controller may still run; stop it, then run `kubesweep apply` again):"
            );
        }
        let _ = writeln!(out, "  {t}: {what}, by {}", who.join(", "));
    }
    out
}

/// The audit line of one write to a controller Deployment's replica count.
fn record_controller(
    audit: &Audit<'_>,
    c: &RunningController,
    operation: serde_json::Value,
    reason: &str,
    failed: bool,
) {
    audit.record(serde_json::json!({
        "phase": "stop-controllers",
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": c.namespace,
        "name": c.name,
        "uid": c.uid,
        "operation": operation,
        "reason": reason,
        "result": if failed { "failed" } else { "done" },
    }));
}

#[cfg(test)]
mod tests {
    use super::webhook_named;

    #[test]
    fn names_the_webhook_of_an_admission_error() {
        assert_eq!(
            webhook_named(
                "Internal error occurred: failed calling webhook \"guard.example.com\": failed to call webhook: Post \"https://guard.x.svc:443/v?timeout=2s\": service \"guard\" not found"
            ),
            Some("guard.example.com")
        );
        assert_eq!(
            webhook_named("admission webhook \"deny.example.com\" denied the request: no"),
            Some("deny.example.com")
        );
        assert_eq!(webhook_named("namespaces \"x\" not found"), None);
    }
}
