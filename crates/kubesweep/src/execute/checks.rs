//! Which requests one wait round sends to learn which pending deletions are
//! still present: the pure choice between a GET per object and a LIST per
//! type (and namespace). I/O lives in `run`.

use std::collections::BTreeMap;

use crate::resource::{ObjectRef, ResourceType};

/// Above this many pending objects of one type, a round LISTs the type in
/// all namespaces at once (one paged request instead of one per namespace).
pub(super) const LIST_ALL_THRESHOLD: usize = 20;

/// One request of a wait round and the pending objects it answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// GET one object by name.
    Get(ObjectRef),
    /// LIST a type, in one namespace (`Some`) or cluster-wide / in all
    /// namespaces (`None`); a target is present if its UID is listed.
    List {
        resource: ResourceType,
        namespace: Option<String>,
        targets: Vec<ObjectRef>,
    },
}

/// The requests for `pending`: a LIST wherever it replaces two or more GETs,
/// a GET otherwise. Per type: more than [`LIST_ALL_THRESHOLD`] objects → one
/// LIST across all namespaces (cluster-wide for cluster-scoped types);
/// otherwise per (type, namespace): one object → GET, two or more → LIST of
/// that namespace (or cluster-wide for a cluster-scoped type). A LIST never
/// costs more requests than the GETs it replaces, so the round count only
/// shrinks; the all-namespace list is kept to large sets because it also
/// returns everything the plan keeps.
pub(super) fn plan_checks(pending: Vec<ObjectRef>) -> Vec<Check> {
    let mut by_type: BTreeMap<ResourceType, Vec<ObjectRef>> = BTreeMap::new();
    for target in pending {
        by_type
            .entry(target.resource.clone())
            .or_default()
            .push(target);
    }
    let mut checks = Vec::new();
    for (resource, targets) in by_type {
        if targets.len() > LIST_ALL_THRESHOLD {
            checks.push(Check::List {
                resource,
                namespace: None,
                targets,
            });
            continue;
        }
        let mut by_namespace: BTreeMap<Option<String>, Vec<ObjectRef>> = BTreeMap::new();
        for target in targets {
            // A cluster-scoped type has one scope whatever the ref says.
            let scope = if resource.namespaced {
                target.namespace.clone()
            } else {
                None
            };
            by_namespace.entry(scope).or_default().push(target);
        }
        for (namespace, mut targets) in by_namespace {
            if targets.len() == 1 {
                checks.extend(targets.pop().map(Check::Get));
            } else {
                checks.push(Check::List {
                    resource: resource.clone(),
                    namespace,
                    targets,
                });
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: "example.io".into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            namespaced,
        }
    }

    fn obj(resource: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            resource: resource.clone(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: "1".into(),
        }
    }

    /// A LIST as (kind, namespace, target names).
    type ListShape = (String, Option<String>, Vec<String>);

    /// The LISTs, and the names of each GET.
    fn shape(checks: &[Check]) -> (Vec<ListShape>, Vec<String>) {
        let mut lists = Vec::new();
        let mut gets = Vec::new();
        for check in checks {
            match check {
                Check::Get(t) => gets.push(t.name.clone()),
                Check::List {
                    resource,
                    namespace,
                    targets,
                } => lists.push((
                    resource.kind.clone(),
                    namespace.clone(),
                    targets.iter().map(|t| t.name.clone()).collect(),
                )),
            }
        }
        (lists, gets)
    }

    #[test]
    fn a_single_object_is_read_by_name() {
        let w = rt("Widget", true);
        let checks = plan_checks(vec![obj(&w, Some("a"), "w1")]);
        assert_eq!(checks, vec![Check::Get(obj(&w, Some("a"), "w1"))]);
    }

    #[test]
    fn two_objects_of_a_type_in_one_namespace_are_one_list_of_that_namespace() {
        let w = rt("Widget", true);
        let (lists, gets) = shape(&plan_checks(vec![
            obj(&w, Some("a"), "w1"),
            obj(&w, Some("a"), "w2"),
            obj(&w, Some("b"), "w3"),
        ]));
        assert_eq!(
            lists,
            vec![(
                "Widget".into(),
                Some("a".into()),
                vec!["w1".into(), "w2".into()]
            )]
        );
        assert_eq!(gets, vec!["w3".to_string()]);
    }

    #[test]
    fn cluster_scoped_objects_of_a_type_are_one_cluster_wide_list() {
        let ns = rt("Namespace", false);
        let crd = rt("Definition", false);
        let (lists, gets) = shape(&plan_checks(vec![
            obj(&ns, None, "n1"),
            obj(&ns, None, "n2"),
            obj(&ns, None, "n3"),
            obj(&crd, None, "d1"),
        ]));
        assert_eq!(
            lists,
            vec![(
                "Namespace".into(),
                None,
                vec!["n1".into(), "n2".into(), "n3".into()]
            )]
        );
        assert_eq!(gets, vec!["d1".to_string()]);
    }

    #[test]
    fn types_are_never_mixed_in_one_list() {
        let w = rt("Widget", true);
        let g = rt("Gadget", true);
        let (lists, gets) = shape(&plan_checks(vec![
            obj(&w, Some("a"), "w1"),
            obj(&g, Some("a"), "g1"),
        ]));
        assert!(lists.is_empty());
        assert_eq!(gets.len(), 2);
    }

    #[test]
    fn a_large_set_of_one_type_is_one_list_across_namespaces() {
        let w = rt("Widget", true);
        let pending: Vec<ObjectRef> = (0..=LIST_ALL_THRESHOLD)
            .map(|i| obj(&w, Some(&format!("ns{i}")), &format!("w{i}")))
            .collect();
        let checks = plan_checks(pending.clone());
        assert_eq!(checks.len(), 1);
        match &checks[0] {
            Check::List {
                namespace, targets, ..
            } => {
                assert_eq!(*namespace, None);
                assert_eq!(targets.len(), pending.len());
            }
            other => panic!("expected one list, got {other:?}"),
        }
    }

    #[test]
    fn every_pending_object_is_answered_for_exactly_once_and_never_costs_more_requests() {
        let w = rt("Widget", true);
        let ns = rt("Namespace", false);
        let mut pending = Vec::new();
        for i in 0..7 {
            pending.push(obj(&w, Some(&format!("ns{}", i % 3)), &format!("w{i}")));
            pending.push(obj(&ns, None, &format!("n{i}")));
        }
        pending.push(obj(&w, Some("lonely"), "w-lonely"));
        let checks = plan_checks(pending.clone());
        assert!(checks.len() <= pending.len());
        let mut answered: Vec<String> = checks
            .iter()
            .flat_map(|c| match c {
                Check::Get(t) => vec![t.name.clone()],
                Check::List { targets, .. } => targets.iter().map(|t| t.name.clone()).collect(),
            })
            .collect();
        answered.sort();
        let mut expected: Vec<String> = pending.iter().map(|t| t.name.clone()).collect();
        expected.sort();
        assert_eq!(answered, expected);
        // 3 widget namespaces with ≥2 each, 1 lone widget, 1 namespace list.
        assert_eq!(checks.len(), 5);
    }

    #[test]
    fn the_empty_set_sends_nothing() {
        assert!(plan_checks(Vec::new()).is_empty());
    }
}
