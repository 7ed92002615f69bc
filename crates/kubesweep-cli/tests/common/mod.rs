//! Helpers shared by the CLI's integration tests: run the real `kubesweep`
//! binary against the shared test cluster and explain its outcome when an
//! assertion fails; seed and reset fixture footprints.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

pub mod helm;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::Client;
use kubesweep_fixtures::harness::{TeardownOnPanic, kubeconfig_path, teardown_on_panic};
use kubesweep_fixtures::{Footprint, SeedOptions, seed, teardown};

/// The shared test cluster's kubeconfig.
pub fn test_kubeconfig() -> PathBuf {
    PathBuf::from(kubeconfig_path())
}

/// Runs the binary against the shared test cluster.
pub fn kubesweep(args: &[&str]) -> Output {
    kubesweep_as(args, &test_kubeconfig())
}

/// Runs the binary with another kubeconfig, in a scratch directory so the
/// backups `apply` writes by default (`./kubesweep-backups`) never land in
/// the source tree.
pub fn kubesweep_as(args: &[&str], kubeconfig: &Path) -> Output {
    static SCRATCH: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let scratch = SCRATCH.get_or_init(|| tempfile::tempdir().expect("scratch dir"));
    Command::new(env!("CARGO_BIN_EXE_kubesweep"))
        .current_dir(scratch.path())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubesweep")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The command's stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A path as an argument.
pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A seeded footprint, torn down again if the test panics before its own
/// reset (see [`TeardownOnPanic`]); reads as the [`Footprint`] it holds.
pub struct Seeded {
    footprint: Footprint,
    _teardown: TeardownOnPanic,
}

impl std::ops::Deref for Seeded {
    type Target = Footprint;
    fn deref(&self) -> &Footprint {
        &self.footprint
    }
}

/// Seeds a footprint (idempotent) and returns what was seeded.
pub async fn seeded_with(client: &Client, options: &SeedOptions) -> Seeded {
    let footprint = seed(client, options)
        .await
        .expect("seed the footprint")
        .footprint;
    Seeded {
        _teardown: teardown_on_panic(&footprint, options),
        footprint,
    }
}

/// Seeds the default (KubeSphere 4.1, small) footprint.
pub async fn seeded(client: &Client) -> Seeded {
    seeded_with(client, &SeedOptions::default()).await
}

/// Removes everything a seed created and restores the system namespaces.
pub async fn reset(client: &Client, footprint: &Footprint) {
    teardown(client, footprint, &SeedOptions::default())
        .await
        .expect("teardown");
}

/// Asserts that an `apply` exited 0 and that its closing verification was clean.
pub fn assert_applied_clean(apply: &Output) {
    assert_eq!(apply.status.code(), Some(0), "{}", explain(apply));
    assert!(
        String::from_utf8_lossy(&apply.stdout).contains("verify: clean"),
        "{}",
        explain(apply)
    );
}

/// Asserts the safety verdict: compared with `before`, kept objects lost only
/// KubeSphere keys and foreign objects are byte-identical.
pub async fn assert_verdict_clean(
    client: &Client,
    footprint: &Footprint,
    before: &kubesweep_fixtures::Snapshot,
) {
    let after = kubesweep_fixtures::snapshot(client, footprint)
        .await
        .expect("snapshot after");
    let bad = kubesweep_fixtures::verdict::violations(footprint, before, &after);
    assert!(
        bad.is_empty(),
        "the cleanup changed what it must not:\n{}",
        bad.join("\n")
    );
}

/// Asserts that namespace `name` exists, is not being deleted, and carries
/// no KubeSphere label, annotation, finalizer or owner any more (the verdict
/// allows their removal; this proves they are really gone).
pub async fn assert_namespace_kept_clean(
    namespaces: &kube::Api<k8s_openapi::api::core::v1::Namespace>,
    name: &str,
) {
    use kube::ResourceExt;
    let ns = namespaces.get(name).await.expect("kept namespace exists");
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "{name} is being deleted"
    );
    let keys = ns
        .labels()
        .keys()
        .chain(ns.annotations().keys())
        .chain(ns.finalizers());
    for key in keys {
        assert!(
            !kubesweep_fixtures::verdict::is_platform_key(key),
            "{name} still carries {key}"
        );
    }
    assert!(
        ns.owner_references()
            .iter()
            .all(|r| !r.api_version.contains("kubesphere.io")),
        "{name} still has a KubeSphere owner"
    );
}

/// `list` rules for every API group this cluster serves through a CRD or an
/// aggregated APIService that the generated role of the built-in KubeSphere
/// profile does not cover: what an operator adds with the hook chart's
/// `rbac.extraRules` (discovery lists every served type, preflight names each
/// missing one). Read from the cluster, not fixed: earlier tests leave
/// foreign CRDs behind (Helm never deletes a chart's CRDs, nor does
/// kubesweep delete foreign ones).
pub async fn foreign_list_rules(client: &Client) -> Vec<serde_json::Value> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    use kube::api::{Api, ListParams};
    let profile = kubesweep::profile::Profile::builtin("kubesphere").expect("profile");
    // A group the generated role names at all is left to it (a rule here
    // would hide the removal of one of its verbs from the minimality probe,
    // e.g. `list` on app.k8s.io's applications).
    let covered: std::collections::BTreeSet<String> = kubesweep::rbac::rules(&profile)
        .into_iter()
        .flat_map(|r| r.api_groups)
        .collect();
    let mut groups = std::collections::BTreeSet::new();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds.list(&ListParams::default()).await.expect("list CRDs") {
        groups.insert(crd.spec.group);
    }
    let services: Api<APIService> = Api::all(client.clone());
    for service in services
        .list(&ListParams::default())
        .await
        .expect("list APIServices")
    {
        if let Some(spec) = service.spec.filter(|s| s.service.is_some()) {
            groups.insert(spec.group.unwrap_or_default());
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty() && !covered.contains(g))
        .map(|g| serde_json::json!({"apiGroups": [g], "resources": ["*"], "verbs": ["list"]}))
        .collect()
}
