//! Human rendering of plans: a phased summary with counts, an optional
//! per-object listing with actions and reasons, findings and data hazards.
//! Pure string building, no colours: terminal styling belongs to the CLI.

use crate::plan::{Operation, Plan, Propagation, Severity};
use std::fmt::Write as _;

/// How much the text shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Counts per phase, findings, data hazards.
    #[default]
    Summary,
    /// Also every action with its target, operation and reason.
    Details,
}

/// Renders `plan` as plain text (ends with a newline).
pub fn render_plan(plan: &Plan, detail: Detail) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_plan(&mut out, plan, detail);
    out
}

fn write_plan(out: &mut String, plan: &Plan, detail: Detail) -> std::fmt::Result {
    let server = if plan.cluster.server.is_empty() {
        "(unknown server)"
    } else {
        plan.cluster.server.as_str()
    };
    writeln!(
        out,
        "Plan: profile {} on {} (kube-system {}), kubesweep {}",
        plan.profile, server, plan.cluster.kube_system_uid, plan.kubesweep_version
    )?;
    writeln!(out, "Digest: sha256:{}", plan.digest())?;
    writeln!(out)?;
    if plan.is_empty() {
        writeln!(
            out,
            "Nothing to remove: no object of the profile was found."
        )?;
    } else {
        writeln!(out, "{:<4}{:<36}{:>8}", "#", "PHASE", "ACTIONS")?;
        for (i, phase) in plan.phases.iter().enumerate() {
            writeln!(
                out,
                "{:<4}{:<36}{:>8}",
                format!("{}.", i + 1),
                phase.id.title(),
                phase.actions.len()
            )?;
            if detail == Detail::Details {
                for action in &phase.actions {
                    writeln!(
                        out,
                        "      {} {}{}",
                        action.operation.verb(),
                        action.target,
                        operation_details(&action.operation)
                    )?;
                    writeln!(out, "        why: {}", action.reason)?;
                }
            }
        }
        let c = &plan.counts;
        writeln!(out)?;
        writeln!(
            out,
            "Total: {} actions ({} deletes, {} metadata strips, {} other); {} destroy data",
            c.actions, c.deletes, c.metadata_strips, c.other, c.destroying_data
        )?;
        if c.removed_with_crds > 0 {
            writeln!(
                out,
                "  of the deletes, {} custom resources are removed by their CRD's deletion (no delete of their own)",
                c.removed_with_crds
            )?;
        }
    }
    if !plan.findings.is_empty() {
        writeln!(out)?;
        writeln!(out, "Findings ({}):", plan.findings.len())?;
        let mut findings: Vec<_> = plan.findings.iter().collect();
        // Warnings first; otherwise keep the planner's order.
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity()));
        for finding in findings {
            let mark = match finding.severity() {
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            writeln!(out, "  {mark}: {finding}")?;
        }
    }
    if !plan.data_hazards.is_empty() {
        writeln!(out)?;
        writeln!(out, "Data hazards ({}):", plan.data_hazards.len())?;
        for hazard in &plan.data_hazards {
            writeln!(out, "  {}", hazard.description)?;
        }
    }
    Ok(())
}

fn propagation(p: Propagation) -> &'static str {
    match p {
        Propagation::Orphan => "orphan dependents",
        Propagation::Background => "background",
        Propagation::Foreground => "foreground (dependents first)",
    }
}

fn operation_details(op: &Operation) -> String {
    let mut parts = Vec::new();
    match op {
        Operation::Delete { propagation: p } => parts.push(propagation(*p).to_owned()),
        Operation::StripFinalizersThenDelete {
            finalizers,
            propagation: p,
        } => {
            if !finalizers.is_empty() {
                parts.push(format!("finalizers: {}", finalizers.join(", ")));
            }
            parts.push(propagation(*p).to_owned());
        }
        Operation::StripMetadata {
            labels,
            annotations,
            finalizers,
            owner_reference_uids,
        } => {
            for (what, list) in [
                ("labels", labels),
                ("annotations", annotations),
                ("finalizers", finalizers),
                ("ownerReferences", owner_reference_uids),
            ] {
                if !list.is_empty() {
                    parts.push(format!("{what}: {}", list.join(", ")));
                }
            }
        }
        Operation::RewriteHelmRecord { remove_kinds } => {
            let kinds: Vec<String> = remove_kinds.iter().map(ToString::to_string).collect();
            parts.push(format!("drop kinds: {}", kinds.join(", ")));
        }
        Operation::RemovedWithCrd { finalizers, crd } => {
            if !finalizers.is_empty() {
                parts.push(format!("finalizers: {}", finalizers.join(", ")));
            }
            parts.push(format!("deleted by the API server with CRD {crd}"));
        }
        Operation::DisableConversionWebhook | Operation::FinalizeNamespaceIfStuck => {}
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("  [{}]", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ClusterIdentity, Inventory};
    use crate::plan::test_support::kubesphere_inventory;
    use crate::plan::{PlanOptions, plan};
    use crate::profile::Profile;

    fn ks() -> Profile {
        Profile::builtin("kubesphere").expect("builtin profile")
    }

    #[test]
    fn empty_plan_says_nothing_to_remove() {
        let inv = Inventory::empty(ClusterIdentity {
            kube_system_uid: "u1".into(),
            server: "https://k:6443".into(),
            context: None,
        });
        let text = render_plan(&plan(&ks(), &inv, &PlanOptions::default()), Detail::Details);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "Plan: profile kubesphere on https://k:6443 (kube-system u1), kubesweep {}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(lines[1].starts_with("Digest: sha256:"));
        assert_eq!(
            lines[3],
            "Nothing to remove: no object of the profile was found."
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn summary_has_phase_counts_findings_and_hazards() {
        let p = plan(&ks(), &kubesphere_inventory(), &PlanOptions::default());
        let text = render_plan(&p, Detail::Summary);
        assert!(
            text.contains("#   PHASE                                ACTIONS\n"),
            "{text}"
        );
        assert!(
            text.contains("2.  validating webhooks                        3\n"),
            "{text}"
        );
        assert!(
            text.contains("15. stuck namespaces (last resort)             4\n"),
            "{text}"
        );
        assert!(text.contains(&format!("Total: {} actions", p.total_actions())));
        assert!(text.contains(
            "  warning: controller kubesphere-system/ks-controller-manager still runs (1/1 ready)"
        ));
        assert!(text.contains("  info: shared CRD applications.app.k8s.io kept"));
        assert!(text.contains("Data hazards (4):\n  namespace extension-whizard is deleted"));
        // Summary mode lists no individual actions.
        assert!(!text.contains("why:"));
        // Warnings come before infos.
        let first_info = text.find("  info:").unwrap_or(usize::MAX);
        let last_warning = text.rfind("  warning:").unwrap_or(0);
        assert!(last_warning < first_info);
    }

    #[test]
    fn details_list_every_action_with_reason() {
        let p = plan(&ks(), &kubesphere_inventory(), &PlanOptions::default());
        let text = render_plan(&p, Detail::Details);
        assert_eq!(text.matches("        why: ").count(), p.total_actions());
        assert!(text.contains(
            "      strip metadata namespaces/project-a  [labels: kubesphere.io/managed, kubesphere.io/workspace; annotations: kubesphere.io/creator; finalizers: finalizers.kubesphere.io/namespaces; ownerReferences: uid-ws1]\n"
        ), "{text}");
        assert!(text.contains(
            "      strip finalizers, delete users.iam.kubesphere.io/admin  [finalizers: finalizers.kubesphere.io/users; orphan dependents]\n"
        ), "{text}");
        assert!(text.contains("      disable conversion webhook customresourcedefinitions.apiextensions.k8s.io/users.iam.kubesphere.io\n"));
    }
}
