//! How the preflight proves permissions with few requests. One
//! SelfSubjectAccessReview per distinct permission grows with the plan (430
//! reviews for a 1k-object footprint), so the proof is tiered, each tier
//! only ever *proving* a permission, never denying one:
//!
//! 1. one review per distinct verb (and subresource) on every group and
//!    resource cluster-wide: the API documents `*` as "all", so an allowed
//!    answer proves every permission with that verb (a cluster admin is done
//!    after a handful of reviews);
//! 2. for the namespaced permissions left, one SelfSubjectRulesReview per
//!    namespace; a complete answer whose rules grant the permission (no
//!    resource names, matched as RBAC matches) proves it. Incomplete
//!    answers (another authorizer in the chain) and failed reviews prove
//!    nothing. Cluster-wide permissions are never proven this way: a rules
//!    review needs a namespace, and its rules mix in that namespace's
//!    RoleBindings, which grant nothing cluster-wide;
//! 3. every permission still unproven gets its own access review, whose
//!    answer is final (and names the reason when denied).
//!
//! The matching and the splitting are pure; the requests are at the edge.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, ResourceRule, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::preflight::{MissingPermission, Permission, PreflightError};
use crate::retry::{self, RetryPolicy};

/// How many reviews run at the same time.
const REVIEW_CONCURRENCY: usize = 16;

/// A verb with its subresource: what one wildcard review asks about.
pub type VerbKey = (String, Option<String>);

/// The distinct verbs (with subresource) among `permissions`: one wildcard
/// review each. Pure.
pub fn wildcard_probes(permissions: &[Permission]) -> BTreeSet<VerbKey> {
    permissions
        .iter()
        .map(|p| (p.verb.clone(), p.subresource.clone()))
        .collect()
}

/// The wildcard form of a verb: every group, every resource, all namespaces.
pub fn wildcard_permission((verb, subresource): &VerbKey) -> Permission {
    Permission {
        verb: verb.clone(),
        group: "*".into(),
        resource: "*".into(),
        subresource: subresource.clone(),
        namespace: None,
    }
}

/// Whether one of `rules` grants `permission` on every object of its
/// resource, matched as the RBAC authorizer matches: `*` or the exact verb,
/// `*` or the exact group, and for the resource `*`, the exact
/// `resource[/subresource]`, or `*/subresource`. A rule limited to resource
/// names proves nothing here (the plan acts on objects by name, but the
/// permission is asked for the resource). Pure.
pub fn rules_grant(rules: &[ResourceRule], permission: &Permission) -> bool {
    let combined = match &permission.subresource {
        Some(sub) => format!("{}/{}", permission.resource, sub),
        None => permission.resource.clone(),
    };
    let any_sub = permission.subresource.as_ref().map(|s| format!("*/{s}"));
    rules.iter().any(|rule| {
        let names_limited = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
        let verb = rule.verbs.iter().any(|v| v == "*" || *v == permission.verb);
        let group = rule
            .api_groups
            .iter()
            .flatten()
            .any(|g| g == "*" || *g == permission.group);
        let resource = rule
            .resources
            .iter()
            .flatten()
            .any(|r| r == "*" || *r == combined || Some(r) == any_sub.as_ref());
        !names_limited && verb && group && resource
    })
}

/// The permissions not proven by the wildcard reviews (tier 1), given the
/// verbs found allowed on everything. Pure.
pub fn unproven_by_wildcards(
    permissions: &[Permission],
    allowed: &BTreeSet<VerbKey>,
) -> Vec<Permission> {
    permissions
        .iter()
        .filter(|p| !allowed.contains(&(p.verb.clone(), p.subresource.clone())))
        .cloned()
        .collect()
}

/// The permissions not proven by the namespaces' rules (tier 2): cluster-wide
/// ones, those in a namespace without usable rules, and those the rules do
/// not grant. Pure.
pub fn unproven_by_rules(
    permissions: &[Permission],
    rules: &BTreeMap<String, Vec<ResourceRule>>,
) -> Vec<Permission> {
    permissions
        .iter()
        .filter(|p| {
            let Some(ns) = &p.namespace else { return true };
            rules.get(ns).is_none_or(|r| !rules_grant(r, p))
        })
        .cloned()
        .collect()
}

/// Asks the API server which of `permissions` the caller lacks, in the
/// three tiers above; the answer is the same as one access review each.
pub async fn missing_permissions(
    client: &Client,
    permissions: &[Permission],
) -> Result<Vec<MissingPermission>, PreflightError> {
    let probes: Vec<Permission> = wildcard_probes(permissions)
        .iter()
        .map(wildcard_permission)
        .collect();
    let allowed: BTreeSet<VerbKey> = review_each(client, &probes)
        .await?
        .into_iter()
        .filter(|(_, missing)| missing.is_none())
        .map(|(p, _)| (p.verb, p.subresource))
        .collect();
    let left = unproven_by_wildcards(permissions, &allowed);
    let namespaces: BTreeSet<String> = left.iter().filter_map(|p| p.namespace.clone()).collect();
    let rules = namespace_rules(client, namespaces).await;
    let left = unproven_by_rules(&left, &rules);
    let mut missing: Vec<MissingPermission> = review_each(client, &left)
        .await?
        .into_iter()
        .filter_map(|(_, m)| m)
        .collect();
    missing.sort_by(|a, b| a.permission.cmp(&b.permission));
    Ok(missing)
}

/// The complete rules of each namespace (tier 2). A namespace whose review
/// fails or comes back incomplete is left out, so its permissions fall
/// through to single reviews.
async fn namespace_rules(
    client: &Client,
    namespaces: BTreeSet<String>,
) -> BTreeMap<String, Vec<ResourceRule>> {
    let api: Api<SelfSubjectRulesReview> = Api::all(client.clone());
    futures::stream::iter(namespaces)
        .map(|namespace| {
            let api = api.clone();
            async move {
                let review = SelfSubjectRulesReview {
                    spec: SelfSubjectRulesReviewSpec {
                        namespace: Some(namespace.clone()),
                    },
                    ..SelfSubjectRulesReview::default()
                };
                let what = format!("rules review in namespace {namespace}");
                let params = PostParams::default();
                let answer = retry::with_retry(&RetryPolicy::standard(), &what, || {
                    api.create(&params, &review)
                })
                .await;
                match answer.ok().and_then(|a| a.status) {
                    Some(status) if !status.incomplete => Some((namespace, status.resource_rules)),
                    _ => None,
                }
            }
        })
        .buffer_unordered(REVIEW_CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// One access review per permission; each permission with what it lacks
/// (`None` when allowed).
async fn review_each(
    client: &Client,
    permissions: &[Permission],
) -> Result<Vec<(Permission, Option<MissingPermission>)>, PreflightError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let reviews: Vec<Result<(Permission, Option<MissingPermission>), PreflightError>> =
        futures::stream::iter(permissions.iter().cloned())
            .map(|permission| {
                let api = api.clone();
                async move {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(ResourceAttributes {
                                verb: Some(permission.verb.clone()),
                                group: Some(permission.group.clone()),
                                resource: Some(permission.resource.clone()),
                                subresource: permission.subresource.clone(),
                                namespace: permission.namespace.clone(),
                                ..ResourceAttributes::default()
                            }),
                            ..SelfSubjectAccessReviewSpec::default()
                        },
                        ..SelfSubjectAccessReview::default()
                    };
                    let what = format!("access review {permission}");
                    let params = PostParams::default();
                    let answer = retry::with_retry(&RetryPolicy::standard(), &what, || {
                        api.create(&params, &review)
                    })
                    .await
                    .map_err(|source| PreflightError::AccessReview {
                        permission: permission.clone(),
                        source,
                    })?;
                    let status = answer.status.unwrap_or_default();
                    if status.allowed {
                        return Ok((permission, None));
                    }
                    let reason = [status.reason, status.evaluation_error]
                        .into_iter()
                        .flatten()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("; ");
                    let missing = MissingPermission {
                        permission: permission.clone(),
                        reason,
                    };
                    Ok((permission, Some(missing)))
                }
            })
            .buffer_unordered(REVIEW_CONCURRENCY)
            .collect()
            .await;
    reviews.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> Permission {
        Permission {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            namespace: ns.map(str::to_string),
        }
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> ResourceRule {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ResourceRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: None,
        }
    }

    #[test]
    fn probes_are_one_per_distinct_verb_and_subresource() {
        let mut finalize = perm("update", "", "namespaces", None);
        finalize.subresource = Some("finalize".into());
        let perms = vec![
            perm("get", "", "secrets", Some("a")),
            perm("get", "apps", "deployments", Some("b")),
            perm("delete", "", "secrets", Some("a")),
            finalize,
            perm("update", "", "configmaps", Some("a")),
        ];
        let probes = wildcard_probes(&perms);
        assert_eq!(probes.len(), 4);
        assert!(probes.contains(&("update".into(), Some("finalize".into()))));
        assert!(probes.contains(&("update".into(), None)));
        let w = wildcard_permission(&("get".into(), None));
        assert_eq!((w.group.as_str(), w.resource.as_str()), ("*", "*"));
        assert_eq!(w.namespace, None);
    }

    #[test]
    fn wildcard_allowed_verbs_prove_every_permission_with_that_verb() {
        let perms = vec![
            perm("get", "", "secrets", Some("a")),
            perm("delete", "", "secrets", Some("a")),
            perm("get", "iam.kubesphere.io", "users", None),
        ];
        let allowed: BTreeSet<VerbKey> = [("get".to_string(), None)].into();
        assert_eq!(
            unproven_by_wildcards(&perms, &allowed),
            vec![perm("delete", "", "secrets", Some("a"))]
        );
    }

    #[test]
    fn rules_match_as_rbac_does() {
        let p = perm("delete", "iam.kubesphere.io", "users", Some("a"));
        assert!(rules_grant(&[rule(&["*"], &["*"], &["*"])], &p));
        assert!(rules_grant(
            &[rule(&["get", "delete"], &["iam.kubesphere.io"], &["users"])],
            &p
        ));
        assert!(!rules_grant(
            &[rule(&["get"], &["iam.kubesphere.io"], &["users"])],
            &p
        ));
        assert!(!rules_grant(&[rule(&["delete"], &[""], &["users"])], &p));
        assert!(!rules_grant(
            &[rule(&["delete"], &["iam.kubesphere.io"], &["groups"])],
            &p
        ));
        // A rule on the subresource alone grants nothing on the resource.
        assert!(!rules_grant(
            &[rule(&["delete"], &["iam.kubesphere.io"], &["users/status"])],
            &p
        ));
        // Limited to names: proves nothing for the resource.
        let mut named = rule(&["delete"], &["iam.kubesphere.io"], &["users"]);
        named.resource_names = Some(vec!["admin".into()]);
        assert!(!rules_grant(&[named], &p));
        // An empty resource-name list is no limit.
        let mut empty = rule(&["delete"], &["iam.kubesphere.io"], &["users"]);
        empty.resource_names = Some(vec![]);
        assert!(rules_grant(&[empty], &p));
    }

    #[test]
    fn subresources_match_exactly_or_by_star_slash() {
        let mut p = perm("update", "", "namespaces", Some("a"));
        p.subresource = Some("finalize".into());
        assert!(rules_grant(
            &[rule(&["update"], &[""], &["namespaces/finalize"])],
            &p
        ));
        assert!(rules_grant(
            &[rule(&["update"], &[""], &["*/finalize"])],
            &p
        ));
        assert!(!rules_grant(
            &[rule(&["update"], &[""], &["namespaces"])],
            &p
        ));
        assert!(!rules_grant(&[rule(&["update"], &[""], &["*/status"])], &p));
    }

    #[test]
    fn rules_never_prove_cluster_wide_permissions_or_unreviewed_namespaces() {
        let all = vec![rule(&["*"], &["*"], &["*"])];
        let rules: BTreeMap<String, Vec<ResourceRule>> = [("a".to_string(), all)].into();
        let perms = vec![
            perm("delete", "", "secrets", Some("a")),
            perm("delete", "", "secrets", Some("b")),
            perm("list", "", "secrets", None),
        ];
        assert_eq!(
            unproven_by_rules(&perms, &rules),
            vec![
                perm("delete", "", "secrets", Some("b")),
                perm("list", "", "secrets", None)
            ]
        );
    }
}
