//! Fixtures: realistic platform footprints and foreign decoys seeded on a real cluster, snapshots to
//! compare before and after, and the integration-test harness.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> kubesweep_fixtures::Result<()> {
//! use kubesweep_fixtures::{SeedOptions, seed, snapshot};
//! let seeded = seed(&client, &SeedOptions::default()).await?;
//! let before = snapshot(&client, &seeded.footprint).await?;
//! // ... run the cleanup under test ...
//! let after = snapshot(&client, &seeded.footprint).await?;
//! assert!(before.diff(&after).is_empty());
//! # Ok(()) }
//! ```

pub mod harness;

mod client;
pub mod crds;
pub mod decoys;
mod error;
mod footprint;
pub mod helm;
pub mod kubesphere_member;
pub mod kubesphere_v3;
pub mod kubesphere_v4;
mod plan;
mod scale;
mod seed;
mod snapshot;
mod state;
mod teardown;
pub mod verdict;

pub use client::client_from_kubeconfig;
pub use error::{Error, Result};
pub use footprint::{Footprint, ObjectKey, Role, SeededObject};
pub use kubesphere_member::{seed_host_clusters, seed_member};
pub use scale::Scale;
pub use seed::{Profile, SeedOptions, SeededFootprint, footprint, seed};
pub use snapshot::{Change, Snapshot, Summary, SummaryRow, canonical, snapshot, summary};
pub use state::{footprint_objects, footprint_state};
pub use teardown::teardown;
