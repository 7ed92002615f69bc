//! Planning: the pure function from profile and inventory to a reviewable
//! [`Plan`], and the plan's data model.

mod model;
mod planner;

pub use model::*;
pub use planner::plan;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
