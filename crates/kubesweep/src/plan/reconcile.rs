//! The last check before the first change: the plan a human confirmed (or a
//! saved plan file) against a plan made afresh from the cluster as it is
//! now, right after the backup.
//!
//! Between the two, hours may pass (a prompt waits, a file is reviewed): a
//! user may create a project in a Workspace that had none, so a delete
//! confirmed as Background must now be Orphan; an object may be re-created;
//! a saved file may have been edited. The rule: every action of the fresh
//! plan must be covered by a confirmed one (same phase, same object UID, an
//! operation that does no more than the confirmed one); then the fresh plan
//! is what runs, because it is what the profile proves *now*: confirmed
//! actions it no longer has (the object is gone, or no longer proven the
//! platform's) are dropped. Anything new was never confirmed, so the run is
//! refused. Pure.

use std::collections::{BTreeSet, HashMap};

use super::model::{Action, Operation, Phase, PhaseId, Plan};

/// A fresh action that the confirmed plan does not cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    /// Phase of the fresh action.
    pub phase: PhaseId,
    /// `kind namespace/name (uid)` of its target.
    pub target: String,
    /// Its operation's verb.
    pub operation: String,
    /// What the confirmed plan had for the same object, if anything.
    pub confirmed: Option<String>,
}

impl std::fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.confirmed {
            Some(c) => write!(
                f,
                "{} {} (confirmed: {c}) on {}",
                self.phase, self.operation, self.target
            ),
            None => write!(
                f,
                "{} {} on {} (not in the confirmed plan)",
                self.phase, self.operation, self.target
            ),
        }
    }
}

/// The fresh plan asks for something the confirmed plan did not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the cluster changed since the plan was confirmed: {} action(s) were never confirmed (first: {}); nothing was changed, plan again",
    .0.len(),
    .0.first().map(ToString::to_string).unwrap_or_default()
)]
pub struct PlanDrift(pub Vec<Unconfirmed>);

/// What runs: the fresh plan, when every action of it is covered by
/// `confirmed`; also the number of confirmed actions that are dropped.
pub fn reconcile(confirmed: &Plan, fresh: &Plan) -> Result<(Plan, usize), PlanDrift> {
    let mut by_target: HashMap<(PhaseId, &str), Vec<&Action>> = HashMap::new();
    for (phase, action) in confirmed.actions() {
        by_target
            .entry((phase, action.target.uid.as_str()))
            .or_default()
            .push(action);
    }
    let mut unconfirmed = Vec::new();
    let mut covered: BTreeSet<(PhaseId, String)> = BTreeSet::new();
    for (phase, action) in fresh.actions() {
        let candidates = by_target
            .get(&(phase, action.target.uid.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if candidates
            .iter()
            .any(|c| within(&action.operation, &c.operation))
        {
            covered.insert((phase, action.target.uid.clone()));
            continue;
        }
        unconfirmed.push(Unconfirmed {
            phase,
            target: format!("{} ({})", action.target, action.target.uid),
            operation: describe(&action.operation),
            confirmed: candidates.first().map(|c| describe(&c.operation)),
        });
    }
    if !unconfirmed.is_empty() {
        return Err(PlanDrift(unconfirmed));
    }
    let dropped = confirmed
        .actions()
        .filter(|(phase, a)| !covered.contains(&(*phase, a.target.uid.clone())))
        .count();
    let mut run = fresh.clone();
    // Keep the phase list complete even when the fresh plan lacks a phase.
    for id in PhaseId::ALL {
        if run.phase(id).is_none() {
            run.phases.push(Phase {
                id,
                actions: Vec::new(),
            });
        }
    }
    run.phases.sort_by_key(|p| p.id);
    Ok((run, dropped))
}

/// Whether `fresh` does no more than `confirmed` to the same object.
fn within(fresh: &Operation, confirmed: &Operation) -> bool {
    use crate::plan::Propagation;
    use Operation::*;
    let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    match (fresh, confirmed) {
        (Delete { propagation: f }, Delete { propagation: c }) => f == c,
        // Finalizers already gone: the delete alone is less than confirmed.
        (Delete { propagation: f }, StripFinalizersThenDelete { propagation: c, .. }) => f == c,
        (
            StripFinalizersThenDelete {
                finalizers: ff,
                propagation: f,
            },
            StripFinalizersThenDelete {
                finalizers: cf,
                propagation: c,
            },
        ) => f == c && subset(ff, cf),
        // The CRD's deletion removes the object as a Background delete
        // would: one is no more than the other when the finalizers are.
        (
            RemovedWithCrd {
                finalizers: ff,
                crd: f,
            },
            RemovedWithCrd {
                finalizers: cf,
                crd: c,
            },
        ) => f == c && subset(ff, cf),
        (
            RemovedWithCrd { finalizers: ff, .. },
            StripFinalizersThenDelete {
                finalizers: cf,
                propagation: Propagation::Background,
            },
        ) => subset(ff, cf),
        // A foreign finalizer appeared: its own Background delete does the
        // same. (Something came to depend on it: Orphan is another
        // propagation than confirmed, refused like Background to Orphan.)
        (
            StripFinalizersThenDelete {
                finalizers: ff,
                propagation: Propagation::Background,
            },
            RemovedWithCrd { finalizers: cf, .. },
        ) => subset(ff, cf),
        (
            StripMetadata {
                labels: fl,
                annotations: fa,
                finalizers: ff,
                owner_reference_uids: fo,
            },
            StripMetadata {
                labels: cl,
                annotations: ca,
                finalizers: cf,
                owner_reference_uids: co,
            },
        ) => subset(fl, cl) && subset(fa, ca) && subset(ff, cf) && subset(fo, co),
        (RewriteHelmRecord { remove_kinds: f }, RewriteHelmRecord { remove_kinds: c }) => {
            f.iter().all(|k| c.contains(k))
        }
        (f, c) => f == c,
    }
}

fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Delete { propagation }
        | Operation::StripFinalizersThenDelete { propagation, .. } => {
            format!("{} ({propagation:?})", operation.verb())
        }
        Operation::RemovedWithCrd { crd, .. } => format!("{} ({crd})", operation.verb()),
        other => other.verb().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterIdentity, types};
    use crate::plan::{PlanCounts, PlanOptions, Propagation};
    use crate::resource::ObjectRef;

    fn empty_plan() -> Plan {
        Plan {
            schema_version: crate::plan::PLAN_SCHEMA_VERSION,
            cluster: ClusterIdentity {
                kube_system_uid: "ks".into(),
                server: String::new(),
                context: None,
            },
            profile: "kubesphere".into(),
            kubesweep_version: "0".into(),
            options: PlanOptions::default(),
            phases: Vec::new(),
            findings: Vec::new(),
            data_hazards: Vec::new(),
            counts: PlanCounts::default(),
        }
    }

    fn action_on(uid: &str, operation: Operation) -> Action {
        Action {
            target: ObjectRef {
                resource: types::namespace(),
                namespace: None,
                name: uid.into(),
                uid: uid.into(),
                resource_version: "1".into(),
            },
            operation,
            reason: "test".into(),
            destroys_data: false,
        }
    }

    fn plan_with(actions: Vec<(PhaseId, Action)>) -> Plan {
        let mut plan = empty_plan();
        for (id, action) in actions {
            match plan.phases.iter_mut().find(|p| p.id == id) {
                Some(phase) => phase.actions.push(action),
                None => plan.phases.push(Phase {
                    id,
                    actions: vec![action],
                }),
            }
        }
        plan
    }

    fn delete(uid: &str, propagation: Propagation) -> Action {
        action_on(
            uid,
            Operation::StripFinalizersThenDelete {
                finalizers: vec!["kubesphere.io/x".into()],
                propagation,
            },
        )
    }

    #[test]
    fn the_same_plan_runs_unchanged() {
        let plan = plan_with(vec![
            (
                PhaseId::CustomResources,
                delete("a", Propagation::Background),
            ),
            (
                PhaseId::Crds,
                action_on(
                    "c",
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ),
        ]);
        let (run, dropped) = reconcile(&plan, &plan).expect("same plan");
        assert_eq!(run.total_actions(), 2);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_delete_that_must_now_orphan_is_refused() {
        let confirmed = plan_with(vec![(
            PhaseId::CustomResources,
            delete("ws", Propagation::Background),
        )]);
        let fresh = plan_with(vec![(
            PhaseId::CustomResources,
            delete("ws", Propagation::Orphan),
        )]);
        let drift = reconcile(&confirmed, &fresh).expect_err("propagation changed");
        assert_eq!(drift.0.len(), 1);
        assert!(drift.to_string().contains("Orphan"), "{drift}");
        assert!(drift.to_string().contains("Background"), "{drift}");
    }

    #[test]
    fn an_object_never_confirmed_is_refused() {
        let confirmed = plan_with(vec![(
            PhaseId::CustomResources,
            delete("a", Propagation::Background),
        )]);
        let fresh = plan_with(vec![
            (
                PhaseId::CustomResources,
                delete("a", Propagation::Background),
            ),
            (
                PhaseId::CustomResources,
                delete("new", Propagation::Background),
            ),
        ]);
        let drift = reconcile(&confirmed, &fresh).expect_err("new object");
        assert_eq!(drift.0.len(), 1);
        assert!(drift.0[0].target.contains("new"));
    }

    #[test]
    fn confirmed_actions_no_longer_proven_are_dropped_not_run() {
        // A hand-edited or outdated plan deletes something the profile does
        // not prove now: the fresh plan lacks it, so it does not run.
        let confirmed = plan_with(vec![
            (
                PhaseId::CustomResources,
                delete("a", Propagation::Background),
            ),
            (
                PhaseId::Namespaces,
                action_on(
                    "user-ns",
                    Operation::Delete {
                        propagation: Propagation::Background,
                    },
                ),
            ),
        ]);
        let fresh = plan_with(vec![(
            PhaseId::CustomResources,
            delete("a", Propagation::Background),
        )]);
        let (run, dropped) = reconcile(&confirmed, &fresh).expect("subset");
        assert_eq!(dropped, 1);
        assert_eq!(run.total_actions(), 1);
        assert!(run.actions().all(|(_, a)| a.target.uid != "user-ns"));
        assert_eq!(run.phases.len(), PhaseId::ALL.len());
    }

    #[test]
    fn doing_less_to_the_same_object_is_covered_doing_more_is_not() {
        let strip = |labels: &[&str]| {
            action_on(
                "ns",
                Operation::StripMetadata {
                    labels: labels.iter().map(|s| s.to_string()).collect(),
                    annotations: vec![],
                    finalizers: vec![],
                    owner_reference_uids: vec![],
                },
            )
        };
        let confirmed = plan_with(vec![(PhaseId::KeptObjects, strip(&["a", "b"]))]);
        let less = plan_with(vec![(PhaseId::KeptObjects, strip(&["a"]))]);
        let more = plan_with(vec![(PhaseId::KeptObjects, strip(&["a", "c"]))]);
        assert!(reconcile(&confirmed, &less).is_ok());
        assert!(reconcile(&confirmed, &more).is_err());
        // The same object in another phase is another action.
        let moved = plan_with(vec![(PhaseId::ClusterLeftovers, strip(&["a"]))]);
        assert!(reconcile(&confirmed, &moved).is_err());
    }

    #[test]
    fn removal_with_the_crd_and_a_background_delete_cover_each_other_an_orphan_does_not() {
        let with_crd = |finalizers: &[&str]| {
            action_on(
                "ip",
                Operation::RemovedWithCrd {
                    finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
                    crd: "installplans.kubesphere.io".into(),
                },
            )
        };
        let in_crs = |a: Action| plan_with(vec![(PhaseId::CustomResources, a)]);
        let confirmed = in_crs(with_crd(&["kubesphere.io/x"]));
        assert!(reconcile(&confirmed, &in_crs(with_crd(&[]))).is_ok());
        assert!(reconcile(&confirmed, &in_crs(with_crd(&["kubesphere.io/y"]))).is_err());
        // A foreign finalizer appeared since: its own Background delete.
        assert!(reconcile(&confirmed, &in_crs(delete("ip", Propagation::Background))).is_ok());
        // A dependent appeared since: the confirmed plan would have taken it
        // with the CRD; as for a Background delete, the switch is refused.
        let drift = reconcile(&confirmed, &in_crs(delete("ip", Propagation::Orphan)))
            .expect_err("orphan now");
        assert!(drift.to_string().contains("Orphan"), "{drift}");
        // Confirmed as its own delete: the CRD's removal may replace a
        // Background delete, never an Orphan one (it would take dependents).
        let background = in_crs(delete("ip", Propagation::Background));
        assert!(reconcile(&background, &confirmed).is_ok());
        let orphan = in_crs(delete("ip", Propagation::Orphan));
        let drift = reconcile(&orphan, &confirmed).expect_err("orphan confirmed");
        assert!(
            drift
                .to_string()
                .contains("strip finalizers, removed with its CRD (installplans.kubesphere.io)"),
            "{drift}"
        );
    }
}
