//! kubesweep: find, plan, remove and verify the footprint of a Kubernetes platform.
//!
//! The pipeline is `profile → discover → inventory → plan → execute → verify`.
//! Profile matching and planning are pure; cluster I/O lives in `discover`,
//! `execute` and `verify`.

pub mod access_review;
pub mod backup;
pub mod cluster;
pub mod discover;
pub mod execute;
pub mod fleet;
pub mod handover;
pub mod helm;
#[cfg(test)]
mod hostile_inputs;
mod http_retry;
pub mod inventory;
pub mod memory;
pub mod plan;
pub mod preflight;
pub mod profile;
pub mod rbac;
pub mod render;
pub mod resource;
pub mod retry;
pub mod staleness;
pub mod verify;
