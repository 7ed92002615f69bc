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
use kube::api::{DynamicObject, ListParams, TypeMeta};

use super::api::{self, ApiCatalog};
use crate::inventory::{NamespaceContent, ObservedList};
use crate::resource::ResourceType;
use crate::retry::{self, RetryPolicy};

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
            let result = list_metadata_in(client, &rt, namespace).await;
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

/// Metadata-only paged list of one type in one namespace.
async fn list_metadata_in(
    client: &Client,
    rt: &ResourceType,
    namespace: &str,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let dynamic = api::dynamic_api(client, rt, Some(namespace));
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(api::PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let what = format!("list metadata {rt} in {namespace}");
        let page = retry::with_retry(&RetryPolicy::standard(), &what, || {
            dynamic.list_metadata(&params)
        })
        .await?;
        out.extend(page.items.into_iter().map(|p| DynamicObject {
            types: Some(TypeMeta {
                api_version: rt.api_version(),
                kind: rt.kind.clone(),
            }),
            metadata: p.metadata,
            data: serde_json::Value::Object(Default::default()),
        }));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}
