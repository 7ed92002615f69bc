//! What a single namespace holds: every namespaced type the server serves,
//! listed in that namespace, metadata only.
//!
//! Two decisions need this proof and nothing less: whether a namespace that
//! a platform object merely *names* holds only the platform's objects (then
//! it may be deleted), and whether a namespace stuck Terminating is really
//! empty (then, and only then, `/finalize` orphans nothing). Both fail
//! closed: a type that cannot be listed, or an API group that failed
//! discovery, makes the listing incomplete, and an incomplete listing proves
//! nothing.

use futures::StreamExt;
use kube::Client;

use super::api::{self, ApiCatalog};
use crate::inventory::{NamespaceContent, ObservedList};
use crate::resource::ResourceType;
use crate::retry;

/// How many LISTs of one namespace run at the same time.
const CONTENT_CONCURRENCY: usize = 8;

/// Lists every namespaced type `catalog` says is served and listable in
/// `namespace`, except the `(group, plural)` pairs in `skip`. Broken API
/// groups and failed lists are recorded in [`NamespaceContent::gaps`].
pub async fn namespace_content(
    client: &Client,
    catalog: &ApiCatalog,
    namespace: &str,
    skip: &[(&str, &str)],
) -> NamespaceContent {
    let mut content = NamespaceContent {
        namespace: namespace.to_owned(),
        ..NamespaceContent::default()
    };
    // A group that failed discovery may serve namespaced types we cannot see.
    content.gaps.extend(
        catalog
            .broken
            .iter()
            .map(|b| format!("API group {} unavailable: {}", b.group_version, b.message)),
    );
    let types: Vec<ResourceType> = catalog
        .resources
        .iter()
        .filter(|r| r.resource.namespaced && r.verbs.iter().any(|v| v == "list"))
        .filter(|r| !skip.contains(&(r.resource.group.as_str(), r.resource.plural.as_str())))
        .map(|r| r.resource.clone())
        .collect();
    let listed: Vec<_> = futures::stream::iter(types)
        .map(|rt| async move {
            let result = super::collect::list_metadata(client, &rt, Some(namespace)).await;
            (rt, result)
        })
        .buffer_unordered(CONTENT_CONCURRENCY)
        .collect()
        .await;
    for (rt, result) in listed {
        match result {
            Ok(objects) if objects.is_empty() => {}
            Ok(objects) => content.objects.push(ObservedList {
                resource: rt,
                objects,
            }),
            // A type removed since discovery (a CRD just deleted) holds nothing.
            Err(err) if retry::is_not_found(&err) => {}
            Err(err) => content.gaps.push(format!(
                "cannot list {} in {namespace}: {}",
                rt.qualified_plural(),
                api::error_message(&err)
            )),
        }
    }
    content.objects.sort_by(|a, b| a.resource.cmp(&b.resource));
    content
}
