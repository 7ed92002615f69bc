//! Profile tests: loading, error locations, validation, and the matching
//! edges (dot boundaries, look-alike names, foreign keys).

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;

fn ks() -> Profile {
    Profile::builtin("kubesphere").expect("builtin profile")
}

fn meta(labels: &[(&str, &str)], finalizers: &[&str]) -> ObjectMeta {
    ObjectMeta {
        name: Some("x".into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        ..ObjectMeta::default()
    }
}

fn owner(api_version: &str, kind: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: "o".into(),
        uid: uid.into(),
        ..OwnerReference::default()
    }
}

const MINIMAL: &str = "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {}\n";

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

#[test]
fn builtin_profiles_load() {
    assert_eq!(Profile::builtin_names(), vec!["kubesphere"]);
    let p = ks();
    assert_eq!(p.name, "kubesphere");
    assert!(
        p.namespaces
            .delete
            .contains(&"kubesphere-system".to_owned())
    );
    let err = Profile::builtin("rancher").expect_err("unknown");
    assert!(err.to_string().contains("kubesphere"), "{err}");
}

#[test]
fn minimal_profile_loads() {
    let p = Profile::from_yaml_str(MINIMAL, "mem").expect("minimal");
    assert!(p.owns_group("a.example.io"));
}

#[test]
fn malformed_file_error_names_file_line_and_column() {
    let file =
        write_temp("name: demo\ndomains: [example.io]\ncrds:\n  groups: [a, b\nnamespaces: {}\n");
    let err = Profile::from_yaml_file(file.path()).expect_err("malformed");
    let ProfileError::Parse {
        origin,
        line,
        column,
        ..
    } = &err
    else {
        panic!("expected a parse error, got {err:?}");
    };
    assert_eq!(origin, &file.path().display().to_string());
    assert!(*line >= 4, "line {line}");
    assert!(*column > 0);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "invalid profile {}:{line}:{column}: ",
            file.path().display()
        )),
        "{text}"
    );
}

#[test]
fn unknown_key_rejected_with_location() {
    let file = write_temp(&format!("{MINIMAL}webhooks:\n  servcies: []\n"));
    let err = Profile::from_yaml_file(file.path()).expect_err("typo");
    let ProfileError::Parse { line, message, .. } = &err else {
        panic!("expected a parse error, got {err:?}");
    };
    assert_eq!(*line, 6, "{err}");
    assert!(message.contains("servcies"), "{message}");
    // The location is said once, in front.
    assert!(!message.contains("line"), "{message}");
}

#[test]
fn missing_file_is_named() {
    let err = Profile::from_yaml_file("/nonexistent/profile.yaml").expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/profile.yaml"),
        "{err}"
    );
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        (
            "name: demo\ndomains: []\ncrds: {}\nnamespaces: {}\n",
            "domains",
        ),
        (
            "name: demo\ndomains: ['']\ncrds: {}\nnamespaces: {}\n",
            "domains[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {groups: [ok.io, Bad_Group]}\nnamespaces: {}\n",
            "crds.groups[1]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {}\nrbac: {namePatterns: ['*']}\n",
            "rbac.namePatterns[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {}\nrbac: {names: ['a*']}\n",
            "rbac.names[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {delete: [kube-system]}\n",
            "namespaces.delete[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\napiGroups: [a.example.io, notexample.io]\ncrds: {}\nnamespaces: {}\n",
            "apiGroups[1]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {shared: [{name: a.b.io, group: b.io}]}\nnamespaces: {}\n",
            "crds.shared[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {deleteWhen: [{prefix: ext-, labels: []}]}\n",
            "namespaces.deleteWhen[0]",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {}\nhelmExecutor: {extensionLabel: example.io/ext, kinds: [{group: batch, kind: Job}], namePrefixes: [h-]}\n",
            "helmExecutor.namePrefixes",
        ),
        (
            "name: demo\ndomains: [example.io]\ncrds: {}\nnamespaces: {}\nhelmExecutor: {extensionLabel: example.io/ext, kinds: [], namePrefixes: [helm-]}\n",
            "helmExecutor.kinds",
        ),
    ];
    for (text, field) in cases {
        match Profile::from_yaml_str(text, "test.yaml") {
            Err(ProfileError::Invalid {
                field: f, origin, ..
            }) => {
                assert_eq!(f, field, "{text}");
                assert_eq!(origin, "test.yaml");
            }
            other => panic!("{text}: expected invalid {field}, got {other:?}"),
        }
    }
}

#[test]
fn domains_match_on_a_dot_boundary() {
    assert!(within_domain("kubesphere.io", "kubesphere.io"));
    assert!(within_domain("iam.kubesphere.io", "kubesphere.io"));
    assert!(!within_domain("notkubesphere.io", "kubesphere.io"));
    assert!(!within_domain("kubesphere.io.example.com", "kubesphere.io"));
    assert!(!within_domain("io", "kubesphere.io"));
    assert!(!within_domain("kubesphere.io", ""));
    let p = ks();
    assert!(p.owns_group("tenant.kubesphere.io"));
    assert!(!p.owns_group("notkubesphere.io"));
    assert!(!p.owns_group("kubesphere.io.example.com"));
}

#[test]
fn crd_roles() {
    let p = ks();
    assert_eq!(
        p.crd_role("workspaces.tenant.kubesphere.io", "tenant.kubesphere.io"),
        Some(CrdRole::Owned)
    );
    assert_eq!(
        p.crd_role(
            "clusterconfigurations.installer.kubesphere.io",
            "installer.kubesphere.io"
        ),
        Some(CrdRole::Owned)
    );
    assert!(matches!(
        p.crd_role("applications.app.k8s.io", "app.k8s.io"),
        Some(CrdRole::Shared(_))
    ));
    assert!(matches!(
        p.crd_role(
            "prometheuses.monitoring.coreos.com",
            "monitoring.coreos.com"
        ),
        Some(CrdRole::Shared(_))
    ));
    assert!(matches!(
        p.crd_role("federatedtypeconfigs.core.kubefed.io", "core.kubefed.io"),
        Some(CrdRole::Shared(_))
    ));
    assert_eq!(p.crd_role("foos.app.k8s.io", "app.k8s.io"), None);
    assert_eq!(
        p.crd_role("widgets.notkubesphere.io", "notkubesphere.io"),
        None
    );
    assert_eq!(
        p.crd_role(
            "things.kubesphere.io.example.com",
            "kubesphere.io.example.com"
        ),
        None
    );
}

#[test]
fn platform_finalizers() {
    let p = ks();
    for f in [
        "kubesphere.io/cascading-deletion",
        "finalizers.kubesphere.io/users",
        "helmrelease.application.kubesphere.io",
        "finalizer.cluster.kubesphere.io",
        "storeCleanFinalizer.application.kubesphere.io",
        "orphan.finalizers.kubesphere.io",
        "finalizers.tenant.kubesphere.io",
        "finalizers.kubesphere.io/namespaces",
    ] {
        assert!(p.is_platform_finalizer(f), "{f}");
    }
    for f in [
        "acme.example.com/keep",
        "notkubesphere.io/x",
        "kubesphere.io.example.com/x",
        "example.com/kubesphere.io",
        "kubernetes",
        "customresourcecleanup.apiextensions.k8s.io",
        "foregroundDeletion",
    ] {
        assert!(!p.is_platform_finalizer(f), "{f}");
    }
    let m = meta(
        &[],
        &["acme.example.com/keep", "kubesphere.io/cascading-deletion"],
    );
    assert_eq!(
        p.platform_finalizers(&m),
        vec!["kubesphere.io/cascading-deletion"]
    );
}

#[test]
fn namespace_only_keys_stay_on_other_objects() {
    let p = ks();
    let m = meta(
        &[
            ("kubesphere.io/managed", "true"),
            ("kubesphere.io/workspace", "ws"),
            ("kubesphere.io/extension-ref", "e"),
            ("team", "a"),
        ],
        &[],
    );
    assert_eq!(
        p.strippable_labels(&m, true),
        vec![
            "kubesphere.io/extension-ref",
            "kubesphere.io/managed",
            "kubesphere.io/workspace"
        ]
    );
    assert_eq!(
        p.strippable_labels(&m, false),
        vec!["kubesphere.io/extension-ref"]
    );
    // A customer object labelled only `kubesphere.io/managed=true` needs nothing.
    assert!(!p.carries_platform_metadata(&meta(&[("kubesphere.io/managed", "true")], &[])));
}

#[test]
fn owner_references() {
    let p = ks();
    let mut m = meta(&[], &[]);
    m.owner_references = Some(vec![
        owner("tenant.kubesphere.io/v1alpha1", "Workspace", "ws"),
        owner("app.k8s.io/v1beta1", "Application", "ks-app"),
        owner("app.k8s.io/v1beta1", "Application", "their-app"),
        owner("notkubesphere.io/v1", "Widget", "w"),
        owner("apps/v1", "ReplicaSet", "rs"),
        owner("v1", "Namespace", "ns"),
    ]);
    let shared: HashSet<String> = ["ks-app".to_owned()].into();
    assert_eq!(
        p.platform_owner_reference_uids(&m, &shared),
        vec!["ws", "ks-app"]
    );
    assert!(p.carries_platform_metadata(&m));
}

#[test]
fn rbac_needs_proof() {
    let p = ks();
    let named = |n: &str| ObjectMeta {
        name: Some(n.into()),
        ..ObjectMeta::default()
    };
    assert!(
        p.rbac_proof("ClusterRoleBinding", &named("ks-core-post-delete"))
            .is_some()
    );
    assert!(
        p.rbac_proof("ClusterRoleBinding", &named("kubesphere"))
            .is_some()
    );
    assert!(
        p.rbac_proof("ClusterRole", &named("kubesphere:iam:ws-admin"))
            .is_some()
    );
    assert!(
        p.rbac_proof("Role", &named("kubesphere:whizard:helm-executor"))
            .is_some()
    );
    assert!(
        p.rbac_proof("ClusterRole", &named("kubesphere::helm-executor"))
            .is_none()
    );
    assert!(
        p.rbac_proof("ClusterRole", &named("acme-kubesphere-exporter"))
            .is_none()
    );
    assert!(
        p.rbac_proof("ClusterRole", &named("kubesphere-ish"))
            .is_none()
    );
    assert!(p.rbac_proof("Role", &named("kubesphere")).is_none());
    assert!(
        p.rbac_proof("ClusterRole", &named("cluster-admin"))
            .is_none()
    );
    let mut managed = named("customer");
    managed.labels = Some([("kubesphere.io/managed".to_owned(), "true".to_owned())].into());
    assert!(p.rbac_proof("ClusterRole", &managed).is_none());
    let mut labelled = named("alice-cluster-admin");
    labelled.labels = Some([("iam.kubesphere.io/user-ref".to_owned(), "alice".to_owned())].into());
    assert!(p.rbac_proof("ClusterRoleBinding", &labelled).is_some());
    let mut owned = named("bob-cluster-admin");
    owned.owner_references = Some(vec![owner("iam.kubesphere.io/v1beta1", "User", "bob")]);
    let reason = p
        .rbac_proof("ClusterRoleBinding", &owned)
        .unwrap_or_default();
    assert!(reason.contains("User"), "{reason}");
}

#[test]
fn patterns() {
    assert!(pattern_matches(
        "kubesphere:*:helm-executor",
        "kubesphere:a:helm-executor"
    ));
    assert!(!pattern_matches(
        "kubesphere:*:helm-executor",
        "kubesphere::helm-executor"
    ));
    assert!(!pattern_matches(
        "kubesphere:*:helm-executor",
        "xkubesphere:a:helm-executor"
    ));
    assert!(pattern_matches(
        "iam.kubesphere.io/*-ref",
        "iam.kubesphere.io/role-ref"
    ));
    assert!(!pattern_matches(
        "iam.kubesphere.io/*-ref",
        "iam.kubesphere.io/-ref"
    ));
    assert!(pattern_matches("exact", "exact"));
    assert!(!pattern_matches("exact", "exactly"));
}

#[test]
fn protected_namespaces_are_always_protected() {
    let p = Profile::from_yaml_str(MINIMAL, "mem").expect("minimal");
    for ns in ALWAYS_PROTECTED_NAMESPACES {
        assert!(p.is_protected_namespace(ns));
    }
    assert!(!p.is_protected_namespace("kubesphere-system"));
}

#[test]
fn builtin_profile_round_trips_through_yaml() {
    let p = ks();
    let text = serde_saphyr::to_string(&p).expect("serialise");
    let back = Profile::from_yaml_str(&text, "round-trip").expect("parse back");
    assert_eq!(back, p);
}

#[test]
fn rules_that_would_claim_everything_or_a_protected_namespace_are_refused() {
    let with = |extra: &str| format!("name: demo\ndomains: [example.io]\n{extra}");
    let cases = [
        (
            with("crds: {groups: ['']}\nnamespaces: {}\n"),
            "crds.groups[0]",
            "empty",
        ),
        (
            with("crds: {groups: [io]}\nnamespaces: {}\n"),
            "crds.groups[0]",
            "top-level",
        ),
        (
            "name: demo\ndomains: [com]\ncrds: {}\nnamespaces: {}\n".to_owned(),
            "domains[0]",
            "top-level",
        ),
        (
            with("crds: {groups: [k8s.io]}\nnamespaces: {}\n"),
            "crds.groups[0]",
            "Kubernetes",
        ),
        (
            with("crds: {}\nnamespaces: {}\nfinalizers: {domains: [kubernetes.io]}\n"),
            "finalizers.domains[0]",
            "Kubernetes",
        ),
        (
            with("crds: {}\nnamespaces: {}\nmetadata: {ownerReferences: {groups: [x-k8s.io]}}\n"),
            "metadata.ownerReferences.groups[0]",
            "Kubernetes",
        ),
        (
            with("crds: {}\nnamespaces: {delete: [ok, kube-system]}\n"),
            "namespaces.delete[1]",
            "protected",
        ),
        (
            with("crds: {}\nnamespaces: {delete: [mine]}\nprotected: {namespaces: [mine]}\n"),
            "namespaces.delete[0]",
            "protected",
        ),
        (
            with("crds: {}\nnamespaces: {deleteWhen: [{prefix: kube-, labels: [example.io/x]}]}\n"),
            "namespaces.deleteWhen[0]",
            "kube-",
        ),
        (
            with("crds: {}\nnamespaces: {deleteWhen: [{prefix: de, labels: [example.io/x]}]}\n"),
            "namespaces.deleteWhen[0]",
            "default",
        ),
    ];
    for (text, field, says) in cases {
        match Profile::from_yaml_str(&text, "test.yaml") {
            Err(ProfileError::Invalid {
                field: f, message, ..
            }) => {
                assert_eq!(f, field, "{text}");
                assert!(message.contains(says), "{text}: {message}");
            }
            other => panic!("{text}: expected invalid {field}, got {other:?}"),
        }
    }
    // A group within a reserved domain may still be named exactly, and a
    // subdomain of one owned.
    Profile::from_yaml_str(
        &with("crds: {groups: [cluster.x-k8s.io]}\nnamespaces: {deleteWhen: [{prefix: ext-, labels: [example.io/x]}]}\n"),
        "test.yaml",
    )
    .expect("a subdomain of a reserved domain is a real owner");
}

#[test]
fn an_oversized_profile_file_is_refused_before_parsing() {
    // 10 MiB of valid-looking YAML: a list of domains.
    let mut text = String::from("name: demo\ndomains:\n");
    while text.len() < 10 * 1024 * 1024 {
        text.push_str("  - a-long-domain-name-for-padding.example.io\n");
    }
    text.push_str("crds: {}\nnamespaces: {}\n");
    let file = write_temp(&text);
    let started = std::time::Instant::now();
    let err = Profile::from_yaml_file(file.path()).expect_err("too large");
    assert!(matches!(err, ProfileError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&MAX_PROFILE_BYTES.to_string()));
    // The same text given as a string goes to the parser, which must
    // answer (a budget error or a profile) without panicking.
    let parsed = Profile::from_yaml_str(&text, "big.yaml");
    eprintln!(
        "10 MiB profile: {:?} in {:?}",
        parsed
            .as_ref()
            .map(|p| p.domains.len())
            .map_err(ToString::to_string),
        started.elapsed()
    );
}

#[test]
fn deeply_nested_profiles_are_parse_errors_not_stack_overflows() {
    for deep in crate::hostile_inputs::nested_yaml(100_000) {
        for text in [
            deep.clone(),
            format!(
                "name: demo\ndomains: [example.io]\ncrds: {{}}\nnamespaces: {{}}\nprotected: {deep}"
            ),
        ] {
            let err = Profile::from_yaml_str(&text, "deep.yaml").expect_err("too deep");
            assert!(matches!(err, ProfileError::Parse { .. }), "{err}");
        }
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = Profile::from_yaml_str(&text, "random.yaml");
        }

        #[test]
        fn on_yaml_like_text(text in "([a-zA-Z]+: |- |\\[|\\]|\\{|\\}|, |\n|  |&a |\\*a |!tag |'|\"|#|\\.|kube-system|io|k8s.io){0,60}") {
            let _ = Profile::from_yaml_str(&text, "yamlish.yaml");
        }

        #[test]
        fn on_the_builtin_profile_cut_and_flipped(cut in 0.0f64..=1.0, flip in 0.0f64..1.0, bit in 0u8..7) {
            let mut bytes = include_str!("../../profiles/kubesphere.yaml").as_bytes().to_vec();
            let at = ((bytes.len() as f64) * flip) as usize;
            bytes[at] ^= 1 << bit;
            bytes.truncate(((bytes.len() as f64) * cut) as usize);
            let _ = Profile::from_yaml_str(&String::from_utf8_lossy(&bytes), "damaged.yaml");
        }
    }
}
