//! The least-privilege ClusterRole of a profile: exactly the verbs and
//! resources `plan`, `backup`, `apply` and `verify` use, derived from the
//! profile and from the same tables the code acts on (the built-in type
//! table, the types discovery skips, the verbs each plan operation sends),
//! so the role cannot drift from the code. Pure; `kubesweep profiles rbac`
//! prints it, the Helm hook chart ships a copy of it.
//!
//! What is granted, and why:
//! - `list` on every listable type Kubernetes serves: discovery lists every
//!   type (metadata only) to find kept objects carrying platform metadata,
//!   the backup lists every namespaced type in the namespaces the plan
//!   deletes, and verify repeats discovery.
//! - `get`, `patch`, `delete` on the namespaced types discovery scans: kept
//!   objects lose platform labels, annotations, finalizers and owner
//!   references (patch), the objects of a platform Helm release and the
//!   platform's Helm executor leftovers are deleted, Helm records are
//!   rewritten or deleted, controllers are scaled to zero; every change is
//!   preceded by a read of the object (UID precondition).
//! - on the cluster-scoped kinds the profile's rules remove (namespaces,
//!   CRDs, webhook configurations, APIServices, ClusterRoles and their
//!   bindings, CSRs): `get` and `delete`, plus `patch` where a plan strips
//!   metadata (namespaces) or disables a conversion webhook (CRDs), plus
//!   `update` on `namespaces/finalize` for the last-resort finalize.
//! - everything (`*` resources) but create in the platform's own groups,
//!   listed one by one in the profile's `apiGroups` (RBAC cannot match a
//!   group by domain), and in the groups of its shared CRDs.
//!
//! Never granted: `create`, `update` (but `namespaces/finalize`), `watch`,
//! `deletecollection`, `escalate`, `bind`, `impersonate`, `*` on any
//! Kubernetes group. Deleting RBAC objects needs only `delete`; removing a
//! finalizer or label from a ClusterRole or binding is a `patch` the API
//! server does not treat as an escalation (escalate/bind are checked only
//! when the rules or the roleRef change).
//!
//! A platform API group missing from `apiGroups`, a foreign CRD or an
//! aggregated API is not granted: preflight asks the API server about every
//! type discovery lists and every change the plan makes, and names each
//! missing permission (verb, resource with group, namespace) before
//! anything changes (exit 4). The hook chart's `rbac.extraRules` adds rules
//! for such types.

pub mod builtin;

use std::collections::{BTreeMap, BTreeSet};

use crate::profile::Profile;

/// One rule of a ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// API groups (exact names; `""` is core).
    pub api_groups: Vec<String>,
    /// Resources (`*` only in the platform's and shared groups).
    pub resources: Vec<String>,
    /// Verbs, sorted.
    pub verbs: Vec<String>,
}

impl Rule {
    /// Whether this rule grants `verb` on `group`/`resource` (a subresource
    /// written `plural/sub`).
    pub fn grants(&self, verb: &str, group: &str, resource: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
            && self.api_groups.iter().any(|g| g == group)
            && self.resources.iter().any(|r| {
                r == resource
                    || (r == "*")
                    || r.strip_suffix("/*")
                        .is_some_and(|p| resource.starts_with(&format!("{p}/")))
            })
    }
}

/// Verbs on what the plan removes or edits whole (platform and shared custom
/// resources): read, strip finalizers, delete.
const OWNED_VERBS: &[&str] = &["delete", "get", "list", "patch"];

/// Verbs on a namespaced type discovery scans for kept objects.
const SCANNED_VERBS: &[&str] = &["delete", "get", "list", "patch"];

/// Verbs on cluster-scoped kinds, by kind, as the planner targets them.
fn cluster_scoped_verbs(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "namespaces") | ("apiextensions.k8s.io", "customresourcedefinitions") => {
            &["delete", "get", "list", "patch"]
        }
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
        | ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
        | ("apiregistration.k8s.io", "apiservices")
        | ("rbac.authorization.k8s.io", "clusterroles")
        | ("rbac.authorization.k8s.io", "clusterrolebindings")
        | ("certificates.k8s.io", "certificatesigningrequests") => &["delete", "get", "list"],
        // Read for owner references only.
        _ => &["list"],
    }
}

/// The verbs the role grants on a built-in type.
pub fn builtin_verbs(b: &builtin::BuiltinType) -> &'static [&'static str] {
    if !b.listable || b.read_by_everyone {
        // Nothing to read, or the default RBAC lets everyone read it (such
        // types are cluster-scoped and only ever read).
        &[]
    } else if !b.namespaced {
        cluster_scoped_verbs(b.group, b.plural)
    } else if crate::discover::is_scan_skipped(b.group, b.plural) {
        // Never changed one by one, only listed (the backup reads them).
        &["list"]
    } else {
        SCANNED_VERBS
    }
}

/// The groups of the profile's shared CRDs, each with its resources (`*`
/// for a shared group).
fn shared_groups(profile: &Profile) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in &profile.crds.shared {
        if let Some(name) = &rule.name
            && let Some((plural, group)) = name.split_once('.')
        {
            out.entry(group.to_string())
                .or_default()
                .insert(plural.to_string());
        }
        if let Some(group) = &rule.group {
            out.insert(group.clone(), BTreeSet::from(["*".to_string()]));
        }
    }
    out
}

/// The rules of the profile's ClusterRole, in a stable order: Kubernetes'
/// groups (core first, then by name), each with one rule per verb set;
/// then the platform's groups; then the shared CRDs' groups.
pub fn rules(profile: &Profile) -> Vec<Rule> {
    // (group, verbs) -> resources.
    let mut by_verbs: BTreeMap<(&str, Vec<&str>), Vec<String>> = BTreeMap::new();
    for b in builtin::BUILTIN_TYPES {
        let verbs = builtin_verbs(b);
        if verbs.is_empty() {
            continue;
        }
        by_verbs
            .entry((b.group, verbs.to_vec()))
            .or_default()
            .push(b.plural.to_string());
    }
    let mut out: Vec<Rule> = by_verbs
        .into_iter()
        .map(|((group, verbs), mut resources)| {
            resources.sort();
            Rule {
                api_groups: vec![group.to_string()],
                resources,
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
            }
        })
        .collect();
    // The last-resort finalize of a stuck namespace.
    out.push(Rule {
        api_groups: vec![String::new()],
        resources: vec!["namespaces/finalize".into()],
        verbs: vec!["update".into()],
    });
    out.sort_by(|a, b| (&a.api_groups, &a.verbs).cmp(&(&b.api_groups, &b.verbs)));

    let mut platform: Vec<String> = profile.api_groups.clone();
    platform.sort();
    platform.dedup();
    if !platform.is_empty() {
        out.push(Rule {
            api_groups: platform,
            resources: vec!["*".into()],
            verbs: OWNED_VERBS.iter().map(|v| v.to_string()).collect(),
        });
    }
    for (group, resources) in shared_groups(profile) {
        out.push(Rule {
            api_groups: vec![group],
            resources: resources.into_iter().collect(),
            verbs: OWNED_VERBS.iter().map(|v| v.to_string()).collect(),
        });
    }
    out
}

/// The ClusterRole as YAML, with a header saying where it comes from. The
/// Helm hook chart keeps this text byte for byte (a test compares them).
pub fn render_cluster_role(profile: &Profile) -> String {
    let mut y = String::new();
    y.push_str(&format!(
        "# Generated by `kubesweep profiles rbac {}`: every permission kubesweep needs to\n\
         # plan, back up, apply and verify with this profile, and no other. Do not edit;\n\
         # regenerate. Types it does not grant (foreign CRDs, aggregated APIs) are named\n\
         # by preflight before anything changes.\n",
        profile.name
    ));
    y.push_str("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n");
    y.push_str(&format!("  name: kubesweep-{}\n", profile.name));
    y.push_str("rules:\n");
    for rule in rules(profile) {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        y.push_str(&format!("  - apiGroups: [{}]\n", list(&rule.api_groups)));
        y.push_str(&format!("    resources: [{}]\n", list(&rule.resources)));
        y.push_str(&format!("    verbs: [{}]\n", list(&rule.verbs)));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubesphere() -> Profile {
        Profile::builtin("kubesphere").expect("built-in profile")
    }

    #[test]
    fn no_wildcard_or_escalating_verb_on_kubernetes_groups() {
        let profile = kubesphere();
        for rule in rules(&profile) {
            for verb in ["*", "create", "escalate", "bind", "impersonate", "watch"] {
                assert!(!rule.verbs.iter().any(|v| v == verb), "{rule:?}");
            }
            let kubernetes = rule
                .api_groups
                .iter()
                .any(|g| builtin::BUILTIN_TYPES.iter().any(|b| b.group == g));
            if kubernetes {
                assert!(!rule.resources.iter().any(|r| r.contains('*')), "{rule:?}");
            }
            assert!(!rule.api_groups.iter().any(|g| g == "*"), "{rule:?}");
        }
    }

    #[test]
    fn each_permission_is_granted_by_exactly_one_rule() {
        // Rules never overlap, so removing one rule removes its permissions.
        let all = rules(&kubesphere());
        for b in builtin::BUILTIN_TYPES {
            for verb in ["get", "list", "patch", "delete", "update"] {
                let n = all
                    .iter()
                    .filter(|r| r.grants(verb, b.group, b.plural))
                    .count();
                assert!(n <= 1, "{verb} {}/{} granted {n} times", b.group, b.plural);
            }
        }
    }

    #[test]
    fn the_platform_groups_are_granted_and_a_look_alike_is_not() {
        let all = rules(&kubesphere());
        let granted = |verb: &str, group: &str, resource: &str| {
            all.iter().any(|r| r.grants(verb, group, resource))
        };
        assert!(granted("patch", "iam.kubesphere.io", "users"));
        assert!(granted("delete", "app.k8s.io", "applications"));
        assert!(!granted("delete", "notkubesphere.io", "widgets"));
        assert!(!granted("list", "acme.example.com", "widgets"));
        assert!(granted("update", "", "namespaces/finalize"));
        assert!(!granted("update", "", "namespaces"));
        assert!(!granted("delete", "", "nodes"));
        assert!(granted("list", "", "nodes"));
        assert!(!granted("get", "", "events"));
    }

    #[test]
    fn the_rendered_role_is_yaml_with_one_entry_per_rule() {
        let profile = kubesphere();
        let yaml = render_cluster_role(&profile);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
        assert_eq!(parsed["kind"], "ClusterRole");
        assert_eq!(parsed["metadata"]["name"], "kubesweep-kubesphere");
        assert_eq!(
            parsed["rules"].as_array().map(Vec::len),
            Some(rules(&profile).len())
        );
    }
}
