//! kubesweep's benchmark: contenders timed on the same freshly seeded
//! footprint, with server-side request counts and client peak memory.
//!
//! `floor` is the minimal client (the limit on a given server); `hook`
//! reproduces KubeSphere's uninstall hook with kubectl; `kubectl_baseline`
//! turns plan actions into kubectl calls (pure); `audit` counts requests in
//! the API server's audit log; `measure` runs a child under GNU time;
//! `report` holds results, medians and the markdown table (pure); `plot`
//! draws them as SVG. The binary drives the cluster: seed, settle, time,
//! verify.

pub mod audit;
pub mod floor;
pub mod hook;
pub mod kubectl_baseline;
pub mod measure;
pub mod plot;
pub mod report;
