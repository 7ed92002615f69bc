//! What still holds a namespace being deleted, read at execution time: the
//! proof the last-resort `/finalize` needs, and the diagnosis of a
//! namespace that stays Terminating.
//!
//! The namespace controller's conditions are not that proof: they are
//! absent while kube-controller-manager is down or has not looked yet, and
//! a missing condition says nothing. So kubesweep lists every namespaced
//! type the server serves in the namespace itself; only a complete listing
//! that finds nothing lets `/finalize` run. The same listing names what
//! blocks deletion: under ordered namespace deletion (Kubernetes 1.34+)
//! the controller deletes pods first and waits for them, so one pod held by
//! a finalizer keeps everything else, and the operator needs that pod's
//! name and finalizer, not a count.

use kube::Client;

use crate::discover::{discover_api, namespace_content};
use crate::inventory::NamespaceContent;

/// How many remaining objects a diagnosis names.
const QUOTED: usize = 10;

/// Everything left in `namespace`, listed type by type; a failure of the
/// API root itself is an error (nothing could be proven).
pub(crate) async fn remaining_content(
    client: &Client,
    namespace: &str,
) -> Result<NamespaceContent, String> {
    let catalog = discover_api(client).await.map_err(|e| {
        let source = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default();
        format!("cannot discover the served types, so the content of {namespace} cannot be listed: {e}: {source}")
    })?;
    Ok(namespace_content(client, &catalog, namespace, &[]).await)
}

/// `Kind namespace/name (finalizers: ...)` of the objects left, those held
/// by finalizers first (under ordered deletion they block the rest), then
/// why the listing may be incomplete.
pub fn describe_content(content: &NamespaceContent) -> Vec<String> {
    let mut objects: Vec<(bool, String)> = content
        .iter()
        .map(|(rt, o)| {
            let name = o.metadata.name.as_deref().unwrap_or_default();
            let finalizers = o.metadata.finalizers.clone().unwrap_or_default();
            let mut text = format!("{} {}/{name}", rt.kind, content.namespace);
            if !finalizers.is_empty() {
                text.push_str(&format!(" (finalizers: {})", finalizers.join(", ")));
            }
            (finalizers.is_empty(), text)
        })
        .collect();
    // Stable: held objects first, listing order otherwise.
    objects.sort_by_key(|(free, _)| *free);
    let total = objects.len();
    let mut out: Vec<String> = objects.into_iter().take(QUOTED).map(|(_, t)| t).collect();
    if total > QUOTED {
        out.push(format!("and {} more", total - QUOTED));
    }
    out.extend(content.gaps.iter().cloned());
    out
}

/// A one-line diagnosis of what is left in a namespace, for reports.
pub(crate) async fn diagnose(client: &Client, namespace: &str) -> String {
    match remaining_content(client, namespace).await {
        Ok(content) if content.iter().next().is_none() && content.complete() => {
            "no content left".to_owned()
        }
        Ok(content) => format!("content left: {}", describe_content(&content).join(", ")),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ObservedList;
    use crate::plan::test_support::{obj, rt};
    use serde_json::json;

    #[test]
    fn objects_held_by_finalizers_come_first_and_the_list_is_bounded() {
        let mut configmaps: Vec<_> = (0..12)
            .map(|i| {
                obj(
                    "v1",
                    "ConfigMap",
                    Some("ns"),
                    &format!("cm-{i:02}"),
                    json!({}),
                )
            })
            .collect();
        configmaps.push(obj(
            "v1",
            "ConfigMap",
            Some("ns"),
            "held",
            json!({"metadata": {"finalizers": ["acme.example.com/hold"]}}),
        ));
        let content = NamespaceContent {
            namespace: "ns".into(),
            objects: vec![ObservedList {
                resource: rt("", "v1", "ConfigMap", "configmaps", true),
                objects: configmaps,
            }],
            gaps: vec!["cannot list widgets.acme.io in ns: forbidden".into()],
        };
        let lines = describe_content(&content);
        assert_eq!(
            lines[0],
            "ConfigMap ns/held (finalizers: acme.example.com/hold)"
        );
        assert_eq!(lines[1], "ConfigMap ns/cm-00");
        assert_eq!(lines[10], "and 3 more");
        assert_eq!(lines[11], "cannot list widgets.acme.io in ns: forbidden");
        assert_eq!(lines.len(), 12);
    }
}
