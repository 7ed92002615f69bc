//! Namespaces that platform objects merely *name* (an InstallPlan's target
//! namespace): a reference is not a proof of creation.
//!
//! An extension installed into a namespace the user already had names that
//! namespace exactly as one installed into a namespace the platform made.
//! Such a namespace is deleted only when everything in it is proven the
//! platform's or a removed Helm release's (discovery lists every namespaced
//! type in it, [`crate::inventory::NamespaceContent`]); otherwise it is kept,
//! the release's objects and the platform's metadata are removed from it as
//! from any kept namespace, and a finding names what was kept and why.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::*;
use crate::inventory::NamespaceContent;

/// How many foreign objects a finding quotes by name.
const QUOTED_OBJECTS: usize = 8;

/// Objects Kubernetes itself creates in every namespace: `(kind, name)` in
/// the core group. They are nobody's content.
const KUBERNETES_DEFAULTS: &[(&str, &str)] = &[
    ("ServiceAccount", "default"),
    ("ConfigMap", "kube-root-ca.crt"),
];

/// Types discovery does not list when proving a namespace the platform's:
/// events are the API server's records about other objects, not content.
pub const CONTENT_SKIP: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Namespace name → "<kind> <name>" of the first platform custom resource
/// naming it by a `namespaces.createdBy` rule.
pub fn namespaces_named_by_platform(
    profile: &Profile,
    inventory: &Inventory,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rule in &profile.namespaces.created_by {
        let Some(crd) = inventory.crds.iter().find(|c| c.name() == rule.crd) else {
            continue;
        };
        for instance in &crd.instances {
            for path in &rule.paths {
                for ns in values_at_path(&instance.data, path) {
                    out.entry(ns).or_insert_with(|| {
                        format!(
                            "{} {}",
                            crd_kind(crd),
                            instance.metadata.name.as_deref().unwrap_or_default()
                        )
                    });
                }
            }
        }
    }
    out
}

/// The existing namespaces whose fate may hang on their content: named by
/// a platform object and not already proven the platform's (or protected,
/// or a user project) by another rule. Discovery lists their content.
pub fn namespaces_needing_content(profile: &Profile, inventory: &Inventory) -> Vec<String> {
    let named = namespaces_named_by_platform(profile, inventory);
    let project_label = profile.namespaces.project_label.as_deref();
    inventory
        .namespaces
        .iter()
        .filter(|ns| {
            let Some(name) = ns.metadata.name.as_deref() else {
                return false;
            };
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            named.contains_key(name)
                && !profile.is_protected_namespace(name)
                && !profile.namespaces.delete.iter().any(|d| d == name)
                && !project_label.is_some_and(|l| labels.contains_key(l))
                && !profile.namespaces.delete_when.iter().any(|r| {
                    name.starts_with(&r.prefix) && r.labels.iter().any(|l| labels.contains_key(l))
                })
        })
        .filter_map(|ns| ns.metadata.name.clone())
        .collect()
}

impl Planner<'_> {
    /// The fate of namespace `name`, named by `source` and proven by no
    /// other rule: deleted only when all of its content is the platform's.
    pub(super) fn named_namespace_fate(&mut self, name: &str, source: &str) -> NamespaceFate {
        let inventory = self.inventory;
        let content = inventory
            .namespace_contents
            .iter()
            .find(|c| c.namespace == name);
        let why_kept = match content {
            None => "its content was not listed, so it cannot be proven the platform's".to_owned(),
            Some(c) if !c.complete() => format!(
                "its content could not be listed completely ({}), so it cannot be proven the platform's",
                c.gaps.join("; ")
            ),
            Some(c) => {
                let foreign = self.foreign_content(c);
                if foreign.is_empty() {
                    return NamespaceFate::Delete(format!(
                        "namespace named by {source}, and everything in it is the platform's or a removed Helm release's"
                    ));
                }
                let mut quoted: Vec<String> =
                    foreign.iter().take(QUOTED_OBJECTS).cloned().collect();
                if foreign.len() > QUOTED_OBJECTS {
                    quoted.push(format!("and {} more", foreign.len() - QUOTED_OBJECTS));
                }
                format!(
                    "holds objects that are not the platform's: {}",
                    quoted.join(", ")
                )
            }
        };
        self.findings.push(Finding::Skipped {
            subject: format!("namespace {name}"),
            reason: format!(
                "kept: referenced by {source} but {why_kept}; only the platform's objects, its releases' objects and its metadata are removed from it"
            ),
        });
        NamespaceFate::Keep(format!("referenced by {source}, not proven the platform's"))
    }

    /// `Kind namespace/name` of every object in `content` that is not
    /// proven the platform's, in listing order.
    fn foreign_content(&self, content: &NamespaceContent) -> Vec<String> {
        let platform = self.platform_content_uids(content);
        content
            .iter()
            .filter(|(_, o)| {
                !o.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| platform.contains(u))
            })
            .map(|(rt, o)| format!("{} {}", rt.kind, namespaced_name(o)))
            .collect()
    }

    /// UIDs of the objects in `content` proven the platform's: Kubernetes'
    /// per-namespace defaults, instances of platform types, live objects
    /// and records of releases the plan removes, the Helm executor's
    /// leftovers, platform RBAC, objects owned by a platform kind; then,
    /// transitively, whatever those own (a release Deployment's ReplicaSets
    /// and their pods) and the Endpoints of platform Services.
    fn platform_content_uids(&self, content: &NamespaceContent) -> HashSet<String> {
        let releases = self.removed_release_uids();
        let extensions = self
            .extensions_by_namespace()
            .remove(&content.namespace)
            .unwrap_or_default();
        let mut platform: HashSet<String> = HashSet::new();
        for (rt, object) in content.iter() {
            let Some(uid) = object.metadata.uid.clone() else {
                continue;
            };
            let name = object.metadata.name.as_deref().unwrap_or_default();
            let proven = (rt.group.is_empty()
                && KUBERNETES_DEFAULTS.contains(&(rt.kind.as_str(), name)))
                || self.profile.owns_group(&rt.group)
                || releases.contains(&uid)
                || self.profile.has_platform_owner(&object.metadata)
                || (rt.group == "rbac.authorization.k8s.io"
                    && self
                        .profile
                        .rbac_proof(&rt.kind, &object.metadata)
                        .is_some())
                || self
                    .profile
                    .executor_leftover_proof(&rt.group, &rt.kind, &object.metadata, &extensions)
                    .is_some();
            if proven {
                platform.insert(uid);
            }
        }
        // Ownership chains are short (Deployment → ReplicaSet → Pod): repeat
        // until nothing new is proven.
        loop {
            let before = platform.len();
            for (_, object) in content.iter() {
                let owned_by_platform = object
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| platform.contains(&r.uid));
                if owned_by_platform && let Some(uid) = &object.metadata.uid {
                    platform.insert(uid.clone());
                }
            }
            if platform.len() == before {
                break;
            }
        }
        let services: BTreeSet<&str> = content
            .iter()
            .filter(|(rt, o)| {
                rt.group.is_empty()
                    && rt.kind == "Service"
                    && o.metadata
                        .uid
                        .as_ref()
                        .is_some_and(|u| platform.contains(u))
            })
            .filter_map(|(_, o)| o.metadata.name.as_deref())
            .collect();
        let endpoints: Vec<String> = content
            .iter()
            .filter(|(rt, o)| {
                rt.group.is_empty()
                    && rt.kind == "Endpoints"
                    && o.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| services.contains(n))
            })
            .filter_map(|(_, o)| o.metadata.uid.clone())
            .collect();
        platform.extend(endpoints);
        platform
    }

    /// UIDs of the live objects and records of the releases the plan
    /// removes (selected, not kept by `--keep-extensions`).
    fn removed_release_uids(&self) -> HashSet<String> {
        self.inventory
            .helm
            .releases
            .iter()
            .filter(|r| {
                let key = crate::helm::ReleaseKey {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                };
                self.releases.selected.contains_key(&key) && !self.kept.releases.contains(&key)
            })
            .flat_map(|r| {
                r.live
                    .iter()
                    .map(|l| &l.object)
                    .chain(&r.records)
                    .filter_map(|o| o.metadata.uid.clone())
            })
            .collect()
    }
}
