//! Planning: the pure function from profile and inventory to a reviewable
//! [`Plan`], and the plan's data model.

mod file;
mod model;
mod planner;
mod reconcile;

pub use file::{DIGEST_FIELD, MAX_PLAN_FILE_BYTES, PlanFileError, parse_plan_file, to_plan_file};
pub use model::*;
pub use planner::{CONTENT_SKIP, namespaces_named_by_platform, namespaces_needing_content, plan};
pub use reconcile::{PlanDrift, Unconfirmed, reconcile};

#[cfg(test)]
mod cascade_tests;
#[cfg(test)]
mod ownership_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
