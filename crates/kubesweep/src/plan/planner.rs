//! The planner: a pure function from a profile and an inventory to a plan.

use super::model::*;
use crate::inventory::Inventory;
use crate::profile::Profile;

/// Plans the removal of `profile`'s footprint from the cluster `inventory` describes.
pub fn plan(profile: &Profile, inventory: &Inventory, options: &PlanOptions) -> Plan {
    let phases: Vec<Phase> = PhaseId::ALL
        .iter()
        .map(|id| Phase {
            id: *id,
            actions: Vec::new(),
        })
        .collect();
    let findings = Vec::new();
    Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        cluster: inventory.cluster.clone(),
        profile: profile.name.clone(),
        kubesweep_version: env!("CARGO_PKG_VERSION").to_owned(),
        options: options.clone(),
        counts: PlanCounts::compute(&phases, &findings),
        phases,
        findings,
        data_hazards: Vec::new(),
    }
}
