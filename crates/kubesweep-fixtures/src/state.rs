//! Whole-footprint state for "nothing changed" assertions: the UID and
//! resourceVersion of every seeded object (any role), and the full objects,
//! read from the cluster. A refused command must leave both identical.

use std::collections::BTreeMap;

use kube::Client;
use serde_json::Value;

use crate::error::Result;
use crate::footprint::Footprint;
use crate::snapshot::fetch;

/// UID and resourceVersion of every seeded object, `None` when absent, keyed
/// by `Kind.group namespace/name`: equal before and after means nothing in
/// the footprint was touched (created, changed or deleted).
pub async fn footprint_state(
    client: &Client,
    footprint: &Footprint,
) -> Result<BTreeMap<String, Option<(String, String)>>> {
    let found = fetch(client, footprint.objects.iter()).await?;
    Ok(footprint
        .objects
        .iter()
        .map(|o| {
            let state = found.get(&o.key).map(|v| {
                let text = |p: &str| {
                    v.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (text("/metadata/uid"), text("/metadata/resourceVersion"))
            });
            (o.key.to_string(), state)
        })
        .collect())
}

/// Every seeded object (any role) as read from the cluster, `None` when absent.
pub async fn footprint_objects(
    client: &Client,
    footprint: &Footprint,
) -> Result<BTreeMap<String, Option<Value>>> {
    let found = fetch(client, footprint.objects.iter()).await?;
    Ok(footprint
        .objects
        .iter()
        .map(|o| (o.key.to_string(), found.get(&o.key).cloned()))
        .collect())
}
