//! kubesweep's benchmark: what is measured and how a baseline executes a
//! plan. The baseline is the way KubeSphere's own uninstall hook works, one
//! `kubectl` process per object, one after the other, each delete waiting
//! until its object is gone; it runs the very plan kubesweep makes, so
//! both do the same work and `verify` must pass after either.
//!
//! `kubectl_baseline` turns plan actions into kubectl invocations (pure);
//! `report` formats results as ratios against the baseline (pure). The
//! binary drives the cluster: seed, settle, time, verify.

pub mod kubectl_baseline;
pub mod report;
