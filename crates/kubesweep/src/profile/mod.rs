//! Profiles: what a platform owns in a cluster, as data (the format), how it
//! is loaded and validated, and the pure predicates that prove ownership.

mod load;
mod matching;
mod model;

pub use load::{MAX_PROFILE_BYTES, ProfileError, RESERVED_DOMAINS};
pub use matching::{
    ALWAYS_PROTECTED_NAMESPACES, CrdRole, api_version_group, key_domain, pattern_matches,
    within_domain,
};
pub use model::*;

#[cfg(test)]
mod tests;
