//! Planning: the pure function from profile and inventory to a reviewable
//! [`Plan`], and the plan's data model.

mod model;
mod planner;
mod reconcile;

pub use model::*;
pub use planner::plan;
pub use reconcile::{PlanDrift, Unconfirmed, reconcile};

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
