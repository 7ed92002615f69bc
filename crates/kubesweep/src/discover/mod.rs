//! Discovery: the read-only cluster I/O that fills an [`crate::inventory::Inventory`].
//! `api` walks the served APIs tolerating broken groups and pages LISTs;
//! `collect` lists what a profile can match; `helm` reads Helm releases; `content` lists everything in one namespace.

mod api;
mod collect;
mod content;
mod helm;

pub use api::{
    ApiCatalog, ApiDiscoveryError, ApiFingerprint, BrokenGroupVersion, CatalogCache, PAGE_SIZE,
    ServedResource, discover_api, discover_api_cached, dynamic_api, error_message, list_all,
    list_in_namespaces,
};
pub use collect::{
    DiscoverError, discover, discover_cached, discover_with_catalog, instance_type, is_scan_skipped,
};
pub use content::namespace_content;
