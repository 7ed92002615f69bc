//! The real `helm` (built by testenv/build-helm) against the test cluster,
//! and what the Helm tests share: writing generated charts, waiting for an
//! object to be gone, reading UIDs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kubesweep_fixtures::harness::kubeconfig_path;

use super::explain;

/// The helm binary: `KUBESWEEP_TEST_HELM`, else the one `testenv/cluster up` built.
pub fn helm_path() -> PathBuf {
    if let Ok(path) = std::env::var("KUBESWEEP_TEST_HELM")
        && !path.is_empty()
    {
        return PathBuf::from(path);
    }
    let file = PathBuf::from(kubeconfig_path()).with_file_name("helm-path");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): start the control plane with testenv/cluster up, which builds helm, or set KUBESWEEP_TEST_HELM",
            file.display()
        )
    });
    PathBuf::from(text.trim())
}

/// Runs helm against the test cluster, with its caches in `home`.
pub fn helm(args: &[&str], home: &Path) -> Output {
    Command::new(helm_path())
        .args(args)
        .args(["--kubeconfig", &kubeconfig_path()])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm")
}

/// [`helm`] that must succeed; its stdout.
pub fn helm_ok(args: &[&str], home: &Path) -> String {
    let out = helm(args, home);
    assert!(out.status.success(), "helm {args:?}: {}", explain(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every release in the cluster, whatever its state: `namespace/name`.
/// Each state is asked for by name: Helm 4 dropped `-a`/`--all`.
pub fn helm_releases(home: &Path) -> Vec<String> {
    let out = helm_ok(
        &[
            "list",
            "-A",
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
            "-o",
            "json",
        ],
        home,
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("helm list json");
    let mut names: Vec<String> = list
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    names.sort();
    names
}

/// Writes chart files (`path`, content) under `dir`.
pub fn write(dir: &Path, files: &[(&str, String)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write chart file");
    }
}

/// A `Chart.yaml`.
pub fn chart_yaml(name: &str) -> String {
    format!("apiVersion: v2\nname: {name}\nversion: 1.0.0\nappVersion: \"1\"\n")
}

/// A CRD manifest with one served version that keeps unknown fields.
pub fn crd_yaml(group: &str, kind: &str, plural: &str, scope: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: {scope}
  names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
",
        singular = kind.to_lowercase()
    )
}

/// Deletes `name` if present and waits until it is gone.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("delete {name}: {e}"),
    }
    for _ in 0..300 {
        match api.get_opt(name).await {
            Ok(None) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("{name} still present after 60 s");
}

/// Asserts that none of `names` exists.
pub async fn assert_absent<K>(api: &Api<K>, names: &[&str])
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    for name in names {
        let found = api
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert!(found.is_none(), "{name} left");
    }
}

/// The UID of `name`, which must exist.
pub async fn uid_of<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .uid()
        .expect("uid")
}
