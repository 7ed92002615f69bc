//! Running a plan: refuses a plan made for another cluster, runs phases in
//! order and the actions of a phase concurrently (bounded), waits (bounded)
//! for the deletions the next phase depends on, and stops early when a phase
//! failed in a way that makes the next ones unsafe, or as soon as the
//! authorizer refuses a request (permissions revoked mid-run): no new action
//! starts, no wait goes on.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::cancel::Cancel;
use super::checks::{Check, plan_checks};
use super::ops::{self, Ctx};
use super::report::*;
use crate::discover::{PAGE_SIZE, dynamic_api, error_message};
use crate::plan::{Action, Operation, Phase, PhaseId, Plan};
use crate::resource::{ObjectRef, ResourceType};
use crate::retry::{self, RetryPolicy};

/// Tuning of a run.
#[derive(Clone, Debug)]
pub struct ExecuteOptions {
    /// Requests in flight at most within a phase.
    pub max_in_flight: usize,
    /// Budget of each wait for deletions.
    pub wait_timeout: Duration,
    /// Longest pause between two checks during a wait (checks start faster).
    pub poll_interval: Duration,
    /// Retry policy of every request.
    pub retry: RetryPolicy,
    /// Run the following phases even after a phase had failures. Failures in
    /// [`PhaseId::KeptObjects`] always stop the run: deleting owners (Workspaces,
    /// CRDs) while a kept namespace still carries their owner reference lets the
    /// garbage collector delete the user's namespace.
    pub keep_going: bool,
    /// Stops the run between actions (an interrupt): no new action starts,
    /// in-flight ones finish, waits end early and no further phase runs.
    pub cancel: Cancel,
    /// UIDs of deleted objects not waited for: in hook mode, the namespace
    /// that holds the records of the release Helm is uninstalling stays
    /// Terminating until Helm purges them, after this process has ended.
    pub not_waited_for: std::collections::HashSet<String>,
    /// Empty and finalize the deleted platform namespaces at the API
    /// server's speed (see [`super::fast_ns`]) instead of waiting for the
    /// namespace controller. Only for namespaces the plan may finalize
    /// as a last resort, and never with `keep_data`.
    pub namespace_fast_path: bool,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            wait_timeout: Duration::from_secs(180),
            poll_interval: Duration::from_secs(2),
            retry: RetryPolicy::standard(),
            keep_going: false,
            cancel: Cancel::new(),
            not_waited_for: Default::default(),
            namespace_fast_path: true,
        }
    }
}

/// Errors that prevent running a plan at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The plan was made for another cluster.
    #[error(
        "the plan was made for cluster {planned} (kube-system UID), but this cluster is {actual}"
    )]
    WrongCluster {
        /// UID in the plan.
        planned: String,
        /// UID of this cluster.
        actual: String,
    },
    /// The cluster identity could not be read.
    #[error("failed to read the cluster identity")]
    Identity(#[source] kube::Error),
}

/// Runs `plan` against the cluster behind `client`.
pub async fn execute(
    client: &Client,
    plan: &Plan,
    options: &ExecuteOptions,
    progress: &dyn Progress,
) -> Result<ExecutionReport, ExecuteError> {
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kube_system = retry::with_retry(&options.retry, "get namespace kube-system", || {
        namespaces.get("kube-system")
    })
    .await
    .map_err(ExecuteError::Identity)?;
    let actual = kube_system.metadata.uid.unwrap_or_default();
    if actual != plan.cluster.kube_system_uid {
        return Err(ExecuteError::WrongCluster {
            planned: plan.cluster.kube_system_uid.clone(),
            actual,
        });
    }

    let ctx = Ctx::new(
        client,
        &options.retry,
        plan.options.finalize_stuck_namespaces,
    );
    let mut report = ExecutionReport {
        cluster: plan.cluster.clone(),
        plan_digest: plan.digest(),
        phases: Vec::new(),
        stopped: None,
        permission_denied: None,
        counts: OutcomeCounts::default(),
        duration_ms: 0,
    };
    // The namespaces the fast path may take: those the plan allows to
    // finalize as a last resort (never system or kept ones, never a
    // namespace whose records Helm purges after the run), and none under
    // --keep-data (the operator asked for caution with data).
    let fast: HashSet<String> = if options.namespace_fast_path && !plan.options.keep_data {
        plan.phase(PhaseId::NamespaceFinalize)
            .into_iter()
            .flat_map(|p| &p.actions)
            .filter(|a| matches!(a.operation, Operation::FinalizeNamespaceIfStuck))
            .map(|a| a.target.uid.clone())
            .filter(|uid| !options.not_waited_for.contains(uid))
            .collect()
    } else {
        HashSet::new()
    };
    let mut phases: Vec<&Phase> = plan.phases.iter().collect();
    // Phase order is the executor's contract, whatever order the file lists.
    phases.sort_by_key(|p| p.id);
    for phase in phases {
        if phase.actions.is_empty() {
            continue;
        }
        if options.cancel.is_cancelled() {
            // Interrupted between phases (or before the first one): the
            // last phase that ran is named.
            let last = report.phases.last().map_or(PhaseId::Preflight, |p| p.id);
            report.stopped = Some(interrupted(last));
            break;
        }
        let phase_report = run_phase(&ctx, phase, options, &fast, progress).await;
        for action in &phase_report.actions {
            report.counts.add(&action.outcome);
        }
        let failed = phase_report.actions.iter().any(|a| a.outcome.is_failure());
        let stop = if options.cancel.is_cancelled() {
            Some(interrupted(phase.id).reason)
        } else if let Some(denied) = ctx.denial() {
            // Even with --keep-going: every further request would be refused.
            report.permission_denied = Some(denied.to_owned());
            Some(format!(
                "permission denied during the run (granted at the preflight check): {denied}; no further request was sent"
            ))
        } else {
            stop_reason(phase.id, &phase_report, failed, options.keep_going)
        };
        progress.phase_finished(&phase_report);
        report.phases.push(phase_report);
        if let Some(reason) = stop {
            tracing::error!(phase = %phase.id, reason, "stopping");
            report.stopped = Some(Stopped {
                after: phase.id,
                reason,
            });
            break;
        }
    }
    report.duration_ms = millis(started.elapsed());
    Ok(report)
}

/// The stop of a run that was interrupted during or after `after`.
fn interrupted(after: PhaseId) -> Stopped {
    Stopped {
        after,
        reason: INTERRUPTED.into(),
    }
}

/// The [`Stopped::reason`] of an interrupted run; front ends match on it.
pub const INTERRUPTED: &str =
    "interrupted: no new action was started; actions already sent finished";

/// Why the run must not go on after `phase`, if it must not. Failures in
/// [`PhaseId::KeptObjects`] always stop it; other failures unless
/// `keep_going`. So does a wait in [`PhaseId::HelmWorkloads`] that ran out:
/// the platform's controllers may still run, and would re-add the
/// finalizers and objects the next phases remove.
fn stop_reason(
    phase: PhaseId,
    report: &PhaseReport,
    failed: bool,
    keep_going: bool,
) -> Option<String> {
    if failed && phase == PhaseId::KeptObjects {
        return Some("platform metadata could not be removed from kept objects; deleting their owners now could let the garbage collector delete user data".into());
    }
    if keep_going {
        return None;
    }
    if failed {
        return Some(
            "actions failed; later phases depend on this one (use --keep-going to run them anyway)"
                .into(),
        );
    }
    let timed_out = report.wait.as_ref().is_some_and(|w| w.timed_out);
    (timed_out && phase == PhaseId::HelmWorkloads).then(|| {
        "the platform's workloads were not gone within the wait budget: its controllers may still run and undo the next phases (raise --wait-timeout, or use --keep-going to run them anyway)".into()
    })
}

async fn run_phase(
    ctx: &Ctx<'_>,
    phase: &Phase,
    options: &ExecuteOptions,
    fast: &HashSet<String>,
    progress: &dyn Progress,
) -> PhaseReport {
    let started = Instant::now();
    progress.phase_started(phase.id, phase.actions.len());
    tracing::info!(phase = %phase.id, actions = phase.actions.len(), "phase started");
    let mut results: Vec<(usize, ActionReport)> = futures::stream::iter(
        // Checked as each slot frees up: after an interrupt no action starts.
        phase
            .actions
            .iter()
            .enumerate()
            .take_while(|_| !options.cancel.is_cancelled() && ctx.denial().is_none()),
    )
    .map(|(i, action)| async move {
            let t = Instant::now();
            let outcome = ops::run_action(ctx, action).await;
            let report = ActionReport {
                target: action.target.clone(),
                operation: action.operation.verb().to_string(),
                outcome,
                duration_ms: millis(t.elapsed()),
            };
            tracing::debug!(target = %report.target, outcome = report.outcome.name(), "action finished");
            progress.action_finished(phase.id, &report);
            (i, report)
        })
        .buffer_unordered(options.max_in_flight.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let actions: Vec<ActionReport> = results.into_iter().map(|(_, r)| r).collect();

    let namespace_paths = if phase.id == PhaseId::Namespaces
        && !options.cancel.is_cancelled()
        && ctx.denial().is_none()
    {
        let deleted: Vec<ObjectRef> = phase
            .actions
            .iter()
            .zip(&actions)
            .filter(|(a, r)| a.operation.deletes() && matches!(r.outcome, Outcome::Done { .. }))
            .filter(|(a, _)| fast.contains(&a.target.uid))
            .map(|(a, _)| a.target.clone())
            .collect();
        super::fast_ns::run(
            ctx,
            deleted,
            options.wait_timeout,
            options.max_in_flight,
            &options.cancel,
            progress,
        )
        .await
    } else {
        Vec::new()
    };
    let wait = if phase.id.waits_for_deletion()
        && !options.cancel.is_cancelled()
        && ctx.denial().is_none()
    {
        let pending: Vec<ObjectRef> = phase
            .actions
            .iter()
            .zip(&actions)
            // Objects removed with their CRD are not gone before the CRDs
            // phase: that phase's wait for the CRD covers them (a CRD is
            // gone only once the API server has deleted all its instances).
            .filter(|(a, r)| {
                a.operation.sends_delete() && matches!(r.outcome, Outcome::Done { .. })
            })
            .filter(|(a, _)| !options.not_waited_for.contains(&a.target.uid))
            .map(|(a, _)| a.target.clone())
            .collect();
        Some(wait_gone(ctx, phase.id, pending, options, progress).await)
    } else {
        None
    };
    PhaseReport {
        id: phase.id,
        actions,
        wait,
        namespace_paths,
        duration_ms: millis(started.elapsed()),
    }
}

/// Waits until every object in `pending` is gone (404, or its name now holds
/// another UID), polling with growing pauses up to the budget. On timeout the
/// remaining objects are read once more in full to say why they stay.
pub(crate) async fn wait_gone(
    ctx: &Ctx<'_>,
    phase: PhaseId,
    mut pending: Vec<ObjectRef>,
    options: &ExecuteOptions,
    progress: &dyn Progress,
) -> WaitReport {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        if pending.is_empty() {
            return WaitReport {
                waited_ms: millis(started.elapsed()),
                timed_out: false,
                remaining: Vec::new(),
            };
        }
        pending = still_present(ctx, pending, options.max_in_flight).await;
        progress.waiting(phase, pending.len(), started.elapsed());
        if pending.is_empty() {
            continue;
        }
        if started.elapsed() >= options.wait_timeout
            || options.cancel.is_cancelled()
            || ctx.denial().is_some()
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(pause.min(options.wait_timeout.saturating_sub(started.elapsed()))) => {}
            () = options.cancel.cancelled() => {}
        }
        pause = (pause * 2).min(options.poll_interval);
    }
    let ended_early = if options.cancel.is_cancelled() {
        Some("interrupted before it was gone")
    } else if ctx.denial().is_some() {
        Some("not checked any more: permission denied")
    } else {
        None
    };
    if let Some(why) = ended_early {
        // No further reads after an interrupt (the operator wants out) or
        // a refusal (they would be refused too).
        return WaitReport {
            waited_ms: millis(started.elapsed()),
            timed_out: false,
            remaining: pending
                .into_iter()
                .map(|target| Remaining {
                    target,
                    reasons: vec![why.into()],
                })
                .collect(),
        };
    }
    let remaining = explain_remaining(ctx, &pending, options.max_in_flight).await;
    tracing::warn!(phase = %phase, remaining = remaining.len(), "deletions still pending after the wait budget");
    WaitReport {
        waited_ms: millis(started.elapsed()),
        timed_out: true,
        remaining,
    }
}

/// The subset of `pending` that still exists with the planned UID (absent,
/// or present with another UID, counts as gone). The requests are chosen by
/// [`plan_checks`]: a LIST wherever it replaces two or more GETs.
async fn still_present(
    ctx: &Ctx<'_>,
    pending: Vec<ObjectRef>,
    concurrency: usize,
) -> Vec<ObjectRef> {
    let checked: Vec<Vec<ObjectRef>> = futures::stream::iter(plan_checks(pending))
        .map(|check| async move {
            match check {
                Check::Get(t) => {
                    let api = dynamic_api(ctx.client, &t.resource, t.namespace.as_deref());
                    match api.get_metadata_opt(&t.name).await {
                        Ok(Some(m)) if m.metadata.uid.as_deref() == Some(t.uid.as_str()) => {
                            vec![t]
                        }
                        Ok(_) => Vec::new(),
                        Err(err) if retry::is_not_found(&err) => Vec::new(),
                        Err(err) => {
                            ctx.note_denial(&format!("get {t}"), &err);
                            vec![t]
                        }
                    }
                }
                Check::List {
                    resource,
                    namespace,
                    targets,
                } => match present_uids(ctx.client, &resource, namespace.as_deref()).await {
                    Ok(uids) => targets
                        .into_iter()
                        .filter(|t| uids.contains(&t.uid))
                        .collect(),
                    // Cannot tell: keep waiting for all of them.
                    Err(err) => {
                        ctx.note_denial(&format!("list {}", resource.qualified_plural()), &err);
                        tracing::debug!(%resource, error = %err, "wait list failed");
                        targets
                    }
                },
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    checked.into_iter().flatten().collect()
}

/// UIDs of all objects of a type in `namespace` (all namespaces, or
/// cluster-wide, when `None`); a type that is no longer served (its CRD is
/// gone) has none.
async fn present_uids(
    client: &Client,
    rt: &ResourceType,
    namespace: Option<&str>,
) -> Result<HashSet<String>, kube::Error> {
    let api = dynamic_api(client, rt, namespace);
    let mut out = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = match api.list_metadata(&params).await {
            Ok(page) => page,
            Err(err) if retry::is_not_found(&err) => return Ok(out),
            Err(err) => return Err(err),
        };
        out.extend(page.items.into_iter().filter_map(|p| p.metadata.uid));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

async fn explain_remaining(
    ctx: &Ctx<'_>,
    pending: &[ObjectRef],
    concurrency: usize,
) -> Vec<Remaining> {
    futures::stream::iter(pending.iter().cloned())
        .map(|target| async move {
            let api = dynamic_api(ctx.client, &target.resource, target.namespace.as_deref());
            let mut reasons = match api.get_opt(&target.name).await {
                Ok(Some(object)) => crate::verify::explain(&object),
                Ok(None) => vec!["gone by now".to_string()],
                Err(err) => vec![format!("could not be read: {}", error_message(&err))],
            };
            // A namespace's conditions count what is left; the operator needs
            // names (which pod, which finalizer).
            if target.resource.group.is_empty() && target.resource.kind == "Namespace" {
                reasons.push(super::stuck::diagnose(ctx.client, &target.name).await);
            }
            Remaining { target, reasons }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Runs a single action outside a plan (tests, tools); same guards as [`execute`].
pub async fn run_single(
    client: &Client,
    action: &Action,
    retry: &RetryPolicy,
    allow_finalize: bool,
) -> Outcome {
    let ctx = Ctx::new(client, retry, allow_finalize);
    ops::run_action(&ctx, action).await
}

/// Waits until `targets` are gone, as the executor does after a deleting phase.
pub async fn wait_for_deletion(
    client: &Client,
    targets: Vec<ObjectRef>,
    options: &ExecuteOptions,
) -> WaitReport {
    let ctx = Ctx::new(client, &options.retry, false);
    wait_gone(&ctx, PhaseId::Preflight, targets, options, &NoProgress).await
}
