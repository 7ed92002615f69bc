//! Helm releases read natively (no helm binary, no subprocess): decoding of
//! the release records Helm 3 stores in Secrets or ConfigMaps (`record`),
//! parsing of a release's rendered manifest and of its chart's `crds/`
//! (`manifest`), the order `helm uninstall` deletes in (`order`), which
//! release an object really belongs to and how far a record's word goes
//! (`ownership`), what discovery observed (`observed`) and which releases a
//! profile makes the platform's (`select`). All of it is pure; the cluster
//! I/O lives in `discover::helm`, the planning in the planner's helm part.

mod manifest;
mod observed;
mod order;
mod ownership;
mod record;
mod rewrite;
mod select;

#[cfg(test)]
mod tests;

pub use manifest::{ChartCrd, ManifestObject, ManifestProblem, chart_crds, parse_manifest};
pub use observed::{
    HelmInventory, LiveObject, ObservedRelease, UnreadableRecord, record_type, summarise,
};
pub use order::{is_workload, uninstall_rank};
pub use ownership::{
    RELEASE_NAME_ANNOTATION, RELEASE_NAMESPACE_ANNOTATION, RecordTrust, ReleaseClaim,
    claimed_release, record_trust, release_claim,
};
pub use record::{
    HelmError, RELEASE_SECRET_TYPE, ReleaseRecord, StorageDriver, decode_release,
    decode_release_bytes, decode_stored_record, record_identity,
};
pub use rewrite::{GroupKind, RewrittenRelease, manifest_kinds, rewrite_release, strip_kinds};
pub use select::{
    ReleaseKey, ReleaseSelection, SelectedRelease, label_naming_release, select_releases,
};
