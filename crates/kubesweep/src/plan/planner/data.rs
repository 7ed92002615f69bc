//! The planner's data part: which namespaces hold PersistentVolumeClaims,
//! what the plan says about them, and `--keep-data`.
//!
//! A namespace the plan would delete takes its claims (and, by their reclaim
//! policy, often their volumes) with it: the data hazard names them. With
//! `--keep-data` such a namespace is kept instead, and so is every namespace
//! whose claims could not be listed: not knowing must never cost data.

use std::collections::BTreeMap;

use super::*;

/// How many claim names a reason or hazard quotes.
const QUOTED_CLAIMS: usize = 10;

/// Namespace → names of its PersistentVolumeClaims, sorted.
pub(super) fn claims_by_namespace(inventory: &Inventory) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for claim in &inventory.volume_claims {
        if let (Some(ns), Some(name)) = (&claim.metadata.namespace, &claim.metadata.name) {
            out.entry(ns.clone()).or_default().push(name.clone());
        }
    }
    for names in out.values_mut() {
        names.sort();
    }
    out
}

/// `a, b, c` or `a, b, ... (12 in all)`.
fn quoted(names: &[String]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(QUOTED_CLAIMS)
        .map(String::as_str)
        .collect();
    if names.len() > shown.len() {
        format!("{}, ... ({} in all)", shown.join(", "), names.len())
    } else {
        shown.join(", ")
    }
}

impl Planner<'_> {
    /// Why listing the claims of `namespace` failed, when it did (a failed
    /// list of all namespaces counts for every namespace).
    fn claims_unlisted(&self, namespace: &str) -> Option<&str> {
        let resource = types::persistent_volume_claim().qualified_plural();
        self.inventory.issues.iter().find_map(|issue| match issue {
            DiscoveryIssue::ListFailed {
                resource: r,
                namespace: ns,
                message,
            } if *r == resource && ns.as_deref().is_none_or(|ns| ns == namespace) => {
                Some(message.as_str())
            }
            _ => None,
        })
    }

    /// Why `--keep-data` keeps a namespace the profile would delete, or
    /// `None` (no `--keep-data`, or provably no claims in it).
    pub(super) fn keep_for_data(&self, namespace: &str) -> Option<String> {
        if !self.options.keep_data {
            return None;
        }
        if let Some(message) = self.claims_unlisted(namespace) {
            return Some(format!(
                "its PersistentVolumeClaims could not be listed ({message}): kept on request (--keep-data)"
            ));
        }
        let names = self.claims.get(namespace).filter(|n| !n.is_empty())?;
        Some(format!(
            "holds PersistentVolumeClaims {}: kept on request (--keep-data)",
            quoted(names)
        ))
    }

    /// What deleting `namespace` destroys, naming its claims.
    pub(super) fn namespace_hazard(&self, namespace: &str) -> String {
        let everything = format!("namespace {namespace} is deleted with everything in it");
        if let Some(names) = self.claims.get(namespace).filter(|n| !n.is_empty()) {
            return format!(
                "{everything}, including {} PersistentVolumeClaim(s) {} whose volumes follow their reclaim policy (--keep-data keeps the namespace)",
                names.len(),
                quoted(names)
            );
        }
        if self.claims_unlisted(namespace).is_some() {
            return format!(
                "{everything} (Secrets, ConfigMaps, and PersistentVolumeClaims, which could not be listed)"
            );
        }
        format!("{everything} (Secrets, ConfigMaps...; it holds no PersistentVolumeClaim)")
    }
}
