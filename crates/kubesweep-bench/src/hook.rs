//! KubeSphere's uninstall hook, reproduced from its documented behaviour
//! with a plain kubectl of the pinned Kubernetes version: for each platform
//! CRD, list its instances, then per instance one `kubectl patch` setting
//! `metadata.finalizers` to null and one `kubectl delete` (waiting, kubectl's
//! default), one after the other, then `kubectl delete crd`. What runs
//! before the hook in a real uninstall (`helm uninstall ks-core`: webhooks,
//! APIServices, the release's objects and records, the labels on kept
//! namespaces) and after it (RBAC leftovers, deleting the platform
//! namespaces, left to the namespace controller and waited for) runs as
//! kubesweep's plan says, one kubectl per action, so the work equals the
//! other contenders' and `verify` judges it the same way. Like the hook,
//! errors of the per-instance calls are ignored (the script discards them).
//!
//! Where the hook would run too long, a fixed sample is timed: every k-th
//! instance stays for the hook, the others are removed untimed by the
//! bench's own client first (their audit lines excluded), and the run's time
//! is extrapolated at the measured cost per instance.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::stream::{self, StreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kubesweep::plan::{Action, PhaseId, Plan};
use serde_json::json;

use crate::audit::{AuditLog, RequestCounts};
use crate::kubectl_baseline::{self, Step};
use crate::measure;
use crate::report::Extrapolation;

/// The kubectl the hook runs and where.
#[derive(Clone, Debug)]
pub struct Kubectl {
    /// The binary (the pinned version built by `testenv/build-kubectl`).
    pub binary: PathBuf,
    /// The bench cluster's kubeconfig.
    pub kubeconfig: PathBuf,
    /// Scratch directory.
    pub dir: PathBuf,
}

/// What one run of the hook method measured.
#[derive(Debug, Default)]
pub struct HookRun {
    /// Timed wall time (the untimed removal of unsampled instances excluded).
    pub timed: Duration,
    /// kubectl processes run.
    pub processes: usize,
    /// The largest kubectl's peak RSS, KiB.
    pub max_rss_kib: u64,
    /// Set when a sample was timed.
    pub extrapolation: Option<Extrapolation>,
    /// Server-side counts of the timed part, plus the per-instance count
    /// times the untimed instances.
    pub requests: Option<RequestCounts>,
}

impl HookRun {
    /// Seconds to report: the timed ones plus the extrapolated rest.
    pub fn seconds(&self) -> f64 {
        self.timed.as_secs_f64()
            + self
                .extrapolation
                .as_ref()
                .map_or(0.0, |e| e.seconds_per_instance * e.skipped_instances as f64)
    }
}

struct Driver<'a> {
    kubectl: &'a Kubectl,
    run: HookRun,
}

impl Driver<'_> {
    /// Runs one kubectl; `Ok(None)` when it failed and `tolerate` is set.
    fn kubectl(&mut self, args: &[String], tolerate: bool) -> anyhow::Result<Option<Vec<u8>>> {
        let mut full = vec![
            "--kubeconfig".to_owned(),
            self.kubectl.kubeconfig.to_string_lossy().into_owned(),
        ];
        full.extend_from_slice(args);
        let m = measure::run(&self.kubectl.binary, &full, &self.kubectl.dir, true)?;
        self.run.processes += 1;
        self.run.max_rss_kib = self.run.max_rss_kib.max(m.max_rss_kib);
        if !m.output.status.success() {
            if tolerate {
                return Ok(None);
            }
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&m.output.stderr).trim()
            );
        }
        Ok(Some(m.output.stdout))
    }

    /// One plan action the way a per-object script does it.
    fn action(&mut self, action: &Action) -> anyhow::Result<()> {
        for step in kubectl_baseline::steps(action).unwrap_or_default() {
            match step {
                Step::Run(args) => {
                    self.kubectl(&args, false)?;
                }
                Step::GetThenPatch { get, mut patch } => {
                    let object = self.kubectl(&get, false)?.unwrap_or_default();
                    if object.is_empty() {
                        continue;
                    }
                    let object: serde_json::Value = serde_json::from_slice(&object)?;
                    if let Some(body) = kubectl_baseline::metadata_patch(&action.operation, &object)
                    {
                        patch.extend(["-p".to_owned(), body.to_string()]);
                        self.kubectl(&patch, false)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The platform CRDs the plan deletes, by name (`plural.group`).
fn deleted_crds(plan: &Plan) -> Vec<String> {
    plan.actions()
        .filter(|(phase, a)| *phase == PhaseId::Crds && a.operation.deletes())
        .map(|(_, a)| a.target.name.clone())
        .collect()
}

/// The plan's custom resources whose CRD the plan deletes: the hook's instances.
pub fn hook_instances(plan: &Plan) -> Vec<&Action> {
    let crds: BTreeSet<String> = deleted_crds(plan).into_iter().collect();
    plan.actions()
        .filter(|(phase, a)| {
            matches!(
                *phase,
                PhaseId::CustomResources | PhaseId::ClusterRegistrations
            ) && crds.contains(&a.target.resource.qualified_plural())
        })
        .map(|(_, a)| a)
        .collect()
}

/// Which of `total` instances the hook times when at most `sample` may be:
/// every k-th, so every type is represented in proportion. Pure.
pub fn sampled(total: usize, sample: Option<usize>) -> Vec<bool> {
    match sample {
        Some(n) if n > 0 && total > n => {
            let stride = total.div_ceil(n);
            (0..total).map(|i| i % stride == 0).collect()
        }
        _ => vec![true; total],
    }
}

/// Runs the hook method on the cluster `plan` was made of. `client` removes
/// the unsampled instances (untimed); `audit` counts the requests.
pub async fn run(
    kubectl: &Kubectl,
    plan: &Plan,
    client: &kube::Client,
    audit: Option<&AuditLog>,
    sample: Option<usize>,
) -> anyhow::Result<HookRun> {
    let mut d = Driver {
        kubectl,
        run: HookRun::default(),
    };
    let started = Instant::now();
    let first_mark = audit.map(AuditLog::mark);
    let mut untimed = Duration::ZERO;
    let mut excluded: Option<(u64, u64)> = None;

    // Every phase the plan runs before the custom resources, in its order
    // (the plan's own list, so a new phase cannot be missed here).
    let cr_at = PhaseId::ALL
        .iter()
        .position(|p| *p == PhaseId::CustomResources)
        .expect("custom-resources phase");
    let before_crs = &PhaseId::ALL[..cr_at];
    for (_, action) in plan.actions().filter(|(p, _)| before_crs.contains(p)) {
        d.action(action)?;
    }

    // The sample: the instances not timed go now, untimed.
    let instances = hook_instances(plan);
    let keep = sampled(instances.len(), sample);
    let skipped: Vec<&Action> = instances
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(a, _)| *a)
        .collect();
    if !skipped.is_empty() {
        let pause = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await; // audit lines of the timed part land first
        let from = audit.map(AuditLog::mark);
        remove_untimed(client, &skipped).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = audit.map(AuditLog::mark);
        if let (Some(a), Some(b)) = (from, to) {
            excluded = Some((a, b));
        }
        untimed += pause.elapsed();
    }

    let mut instance_time = Duration::ZERO;
    let mut instance_counts = RequestCounts::default();
    let mut timed_instances = 0;
    for crd in deleted_crds(plan) {
        let listing = d
            .kubectl(
                &[
                    "get".into(),
                    crd.clone(),
                    "-A".into(),
                    "-o".into(),
                    "jsonpath={range .items[*]}{.metadata.namespace}{\"\\t\"}{.metadata.name}{\"\\n\"}{end}".into(),
                ],
                true,
            )?
            .unwrap_or_default();
        for line in String::from_utf8_lossy(&listing).lines() {
            let Some((ns, name)) = line.split_once('\t') else {
                continue;
            };
            let mut target = vec![crd.clone(), name.to_owned()];
            if !ns.is_empty() {
                target.extend(["-n".to_owned(), ns.to_owned()]);
            }
            let mark = audit.map(AuditLog::mark);
            let t = Instant::now();
            let mut patch = vec!["patch".to_owned()];
            patch.extend(target.iter().cloned());
            patch.extend([
                "--type=merge".to_owned(),
                "-p".to_owned(),
                json!({"metadata": {"finalizers": null}}).to_string(),
            ]);
            d.kubectl(&patch, true)?;
            let mut delete = vec!["delete".to_owned()];
            delete.extend(target);
            d.kubectl(&delete, true)?;
            instance_time += t.elapsed();
            timed_instances += 1;
            if let (Some(log), Some(mark)) = (audit, mark) {
                instance_counts.add(&log.count(mark, log.mark())?);
            }
        }
        d.kubectl(&["delete".into(), "crd".into(), crd.clone()], false)?;
    }
    let crds: BTreeSet<String> = deleted_crds(plan).into_iter().collect();
    let after = [PhaseId::ClusterLeftovers, PhaseId::Namespaces];
    for (phase, action) in plan.actions() {
        let other_cr = matches!(
            phase,
            PhaseId::CustomResources | PhaseId::ClusterRegistrations
        ) && !crds.contains(&action.target.resource.qualified_plural());
        if other_cr || after.contains(&phase) {
            d.action(action)?;
        }
    }
    d.run.timed = started.elapsed().saturating_sub(untimed);

    if let (Some(log), Some(first)) = (audit, first_mark) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = log.mark();
        let mut counts = match excluded {
            Some((a, b)) => {
                let mut c = log.count(first, a)?;
                c.add(&log.count(b, last)?);
                c
            }
            None => log.count(first, last)?,
        };
        if !skipped.is_empty() && timed_instances > 0 {
            counts.add(&instance_counts.scaled(skipped.len() as f64 / timed_instances as f64));
        }
        d.run.requests = Some(counts);
    }
    if !skipped.is_empty() {
        d.run.extrapolation = Some(Extrapolation {
            measured_seconds: d.run.timed.as_secs_f64(),
            timed_instances,
            skipped_instances: skipped.len(),
            seconds_per_instance: if timed_instances == 0 {
                0.0
            } else {
                instance_time.as_secs_f64() / timed_instances as f64
            },
        });
    }
    Ok(d.run)
}

/// What the hook does to an instance, with the bench's own client, many at
/// a time, then waits until they are gone.
async fn remove_untimed(client: &kube::Client, actions: &[&Action]) -> anyhow::Result<()> {
    let api = |a: &Action| -> Api<DynamicObject> {
        let ar = a.target.resource.api_resource();
        match &a.target.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        }
    };
    let body = json!({"metadata": {"finalizers": null}});
    let results = stream::iter(actions.iter().map(|a| {
        let api = api(a);
        let body = &body;
        async move {
            let name = &a.target.name;
            let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(body))
                .await
            {
                Err(e) if !gone(&e) => return Err(e).context(format!("patch {}", a.target)),
                _ => {}
            }
            match api.delete(name, &DeleteParams::default()).await {
                Err(e) if !gone(&e) => Err(e).context(format!("delete {}", a.target)),
                _ => Ok(()),
            }
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    for a in actions {
        let api = api(a);
        let deadline = Instant::now() + Duration::from_secs(120);
        while api.get_opt(&a.target.name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("{} still there 120 s after its untimed delete", a.target);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Whether `path` runs as kubectl of `version` (`kubectl version --client`).
pub fn check_version(path: &Path, version: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new(path)
        .args(["version", "--client", "-o", "json"])
        .output()
        .with_context(|| format!("run {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} version --client -o json", path.display()))?;
    let found = v["clientVersion"]["gitVersion"].as_str().unwrap_or("?");
    if found != version {
        bail!(
            "{} is kubectl {found}, not {version}: build the pinned one with testenv/build-kubectl",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_every_kth_instance() {
        assert_eq!(sampled(3, None), vec![true; 3]);
        assert_eq!(sampled(3, Some(10)), vec![true; 3]);
        let s = sampled(10, Some(4));
        assert_eq!(
            s,
            [
                true, false, false, true, false, false, true, false, false, true
            ]
        );
        assert_eq!(sampled(1000, Some(100)).iter().filter(|k| **k).count(), 100);
    }
}
