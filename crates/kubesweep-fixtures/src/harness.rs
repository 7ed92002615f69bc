//! Test harness for integration tests that run against the shared local control
//! plane: one cluster per test run (started by `testenv/cluster up` through the
//! test command), found through `KUBESWEEP_TEST_KUBECONFIG`.
//!
//! Tests are never skipped silently: without a cluster they fail with a message
//! that says how to start one. A test that must break the control plane (stop
//! one of its components) brings up a [`PrivateControlPlane`] of its own.

use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable naming the kubeconfig of the shared test cluster.
pub const KUBECONFIG_ENV: &str = "KUBESWEEP_TEST_KUBECONFIG";

/// Path of the shared test cluster's kubeconfig.
///
/// # Panics
/// When the variable is unset: integration tests need the real control plane
/// and must fail, not skip, without it.
pub fn kubeconfig_path() -> String {
    match std::env::var(KUBECONFIG_ENV) {
        Ok(path) if !path.is_empty() => path,
        _ => panic!(
            "{KUBECONFIG_ENV} is not set: integration tests need the real control plane. \
             Run the whole suite with `make test`, or start it with `testenv/cluster up` and \
             export {KUBECONFIG_ENV}=<the KUBECONFIG path it prints>"
        ),
    }
}

/// kube client configuration for the shared test cluster.
pub async fn shared_config() -> kube::Config {
    let path = kubeconfig_path();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read test kubeconfig {path}: {e}"));
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid test kubeconfig {path}: {e}"))
}

/// A client for the shared test cluster.
pub async fn shared_client() -> kube::Client {
    kube::Client::try_from(shared_config().await).expect("build client for the test cluster")
}

/// A name unique within this test run and across runs on the same cluster:
/// `<prefix>-<pid>-<counter>`, short enough for a namespace (63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}-{}-{n}", std::process::id());
    assert!(name.len() <= 63, "unique name too long: {name}");
    name
}

/// Held while a test touches cluster-wide objects with fixed names; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    _file: std::fs::File,
}

/// Serialises tests that touch cluster-wide objects with fixed names (the
/// seeded platform footprint, APIServices that break discovery) — across
/// threads and across processes sharing the cluster: an exclusive lock on a
/// file next to the cluster's kubeconfig (flock: separate opens exclude each
/// other even within one process). A test that panics releases it on unwind.
pub fn cluster_lock() -> ClusterLock {
    let (file, path) = lock_file();
    file.lock()
        .unwrap_or_else(|e| panic!("cannot take the cluster lock {}: {e}", path.display()));
    ClusterLock { _file: file }
}

/// The lock file next to the shared cluster's kubeconfig, opened.
fn lock_file() -> (std::fs::File, std::path::PathBuf) {
    let kubeconfig = std::path::PathBuf::from(kubeconfig_path());
    let path = kubeconfig.with_file_name("kubesweep-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the cluster lock {}: {e}", path.display()));
    (file, path)
}

/// Held by a test that needs the shared cluster healthy (discovery working,
/// namespaces deleted by the controller) while it runs; released on drop.
#[derive(Debug)]
pub struct ClusterShare {
    _file: std::fs::File,
}

/// A shared hold on the lock [`cluster_lock`] takes exclusively: tests that
/// break the cluster for a moment (an unavailable APIService stops every
/// namespace deletion and every full discovery) wait for these to finish,
/// and these wait for them, while tests holding shares run in parallel.
pub fn cluster_share() -> ClusterShare {
    let (file, path) = lock_file();
    file.lock_shared()
        .unwrap_or_else(|e| panic!("cannot share the cluster lock {}: {e}", path.display()));
    ClusterShare { _file: file }
}

/// A control plane of a test's own: etcd, kube-apiserver and
/// kube-controller-manager started by `testenv/cluster up` in a fresh state
/// directory, stopped (`down`) and its directory removed on drop (kept, and
/// named on stderr, when the test panicked, for its logs).
///
/// For tests that stop a component: doing that on the shared cluster would
/// break every other test running on it. The binaries are cached, so
/// starting one takes seconds.
#[derive(Debug)]
pub struct PrivateControlPlane {
    state: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

impl PrivateControlPlane {
    /// Starts one and waits until it is ready.
    ///
    /// # Panics
    /// When it does not come up (the launcher's output is in the message).
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts one with extra environment for `testenv/cluster up` (the
    /// launcher's test hooks, such as `TESTENV_FIRST_PORTS`).
    ///
    /// # Panics
    /// When it does not come up.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let state = std::env::temp_dir().join(unique_name("kubesweep-cp"));
        std::fs::create_dir_all(&state)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", state.display()));
        let plane = Self {
            kubeconfig: state.join("kubeconfig"),
            state,
        };
        plane.cluster_with_env(&["up"], env);
        assert!(
            plane.kubeconfig.exists(),
            "no kubeconfig in {}",
            plane.state.display()
        );
        plane
    }

    /// Its kubeconfig.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// A client for it.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("private control plane kubeconfig");
        kube::Client::try_from(config).expect("client for the private control plane")
    }

    /// Stops one component (`kube-controller-manager`, ...), keeping its state.
    pub fn stop(&self, component: &str) {
        self.cluster(&["stop", component]);
    }

    /// Starts a stopped component again (same ports and flags) and waits until it answers.
    pub fn start_component(&self, component: &str) {
        self.cluster(&["start", component]);
    }

    /// Restarts one component on the same ports with `extra_flags` added to
    /// the flags `up` gave it (later flags win; none: back to those flags),
    /// and waits until it answers: kube-apiserver with lower request limits,
    /// an audit log, ... Its state (etcd's data) is kept.
    pub fn restart_component(&self, component: &str, extra_flags: &[&str]) {
        let mut args = vec!["restart", component];
        if !extra_flags.is_empty() {
            args.push("--");
            args.extend_from_slice(extra_flags);
        }
        self.cluster(&args);
    }

    /// Limits one component's write operations on the disk holding its
    /// state to `iops` per second, for real (a cgroup v1 blkio throttle:
    /// needs root; etcd must fsync, `--unsafe-no-fsync=false`); 0 lifts it.
    pub fn throttle_writes(&self, component: &str, iops: u32) {
        self.cluster(&["throttle-writes", component, &iops.to_string()]);
    }

    /// etcd's client URL (plain HTTP on loopback: `/metrics`, `/health`).
    pub fn etcd_url(&self) -> String {
        let path = self.state.join("run").join("etcd.launch.json");
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        record["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .find_map(|arg| arg.strip_prefix("--advertise-client-urls="))
            .unwrap_or_else(|| panic!("no etcd client URL in {}", path.display()))
            .to_string()
    }

    /// The directory holding its components' logs (`<component>.log`,
    /// appended to across restarts).
    pub fn logs_dir(&self) -> std::path::PathBuf {
        self.state.join("logs")
    }

    fn cluster(&self, args: &[&str]) {
        self.cluster_with_env(args, &[]);
    }

    fn cluster_with_env(&self, args: &[&str], env: &[(&str, &str)]) {
        let output = std::process::Command::new(testenv_script())
            .args(args)
            .env("KUBESWEEP_TESTENV_DIR", &self.state)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run testenv/cluster: {e}"));
        assert!(
            output.status.success(),
            "testenv/cluster {} failed ({:?}):\n{}{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateControlPlane {
    fn drop(&mut self) {
        let down = std::process::Command::new(testenv_script())
            .arg("down")
            .env("KUBESWEEP_TESTENV_DIR", &self.state)
            .output();
        if !matches!(&down, Ok(o) if o.status.success()) {
            eprintln!(
                "private control plane in {} did not stop cleanly: {down:?}",
                self.state.display()
            );
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "private control plane logs kept in {}",
                self.state.join("logs").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

/// The node `testenv/cluster node-up` attaches (kubelet, containerd,
/// kube-scheduler): pods bound to it really run.
pub const NODE_NAME: &str = "testenv-node";

/// Attaches a node to the shared cluster (`testenv/cluster node-up`, built
/// when needed: see testenv/README.md) unless one runs, and imports
/// `image_binary` into it as the image `kubesweep:dev` (pods use it with
/// `imagePullPolicy: Never`). Host-network pods on it get the API server's
/// address (testenv runs no kube-proxy). The node stays until the cluster's
/// `down` (or `node-down`); hold [`cluster_lock`] while attaching, it restarts
/// kube-controller-manager the first time.
///
/// # Panics
/// When the node does not come up (the launcher's output is in the message).
pub fn attach_node(image_binary: &std::path::Path) {
    let kubeconfig = std::path::PathBuf::from(kubeconfig_path());
    let state = kubeconfig
        .parent()
        .unwrap_or_else(|| panic!("{} has no directory", kubeconfig.display()));
    let output = std::process::Command::new(testenv_script())
        .arg("node-up")
        .env("KUBESWEEP_TESTENV_DIR", state)
        .env("KUBESWEEP_IMAGE_BINARY", image_binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run testenv/cluster: {e}"));
    assert!(
        output.status.success(),
        "testenv/cluster node-up failed ({:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `testenv/cluster` of this checkout.
fn testenv_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/cluster")
}

/// Tears a seeded footprint down when the test holding it panics, so that a
/// failed test does not leave the platform behind for the next one (which
/// would then fail for a reason of its own). A test that passes resets
/// explicitly and this does nothing. Declare it after the [`ClusterLock`]:
/// locals drop in reverse order, so the teardown runs while the lock is held.
#[derive(Debug)]
pub struct TeardownOnPanic {
    footprint: crate::Footprint,
    options: crate::SeedOptions,
}

/// Arms a [`TeardownOnPanic`] for `footprint`, seeded with `options`.
pub fn teardown_on_panic(
    footprint: &crate::Footprint,
    options: &crate::SeedOptions,
) -> TeardownOnPanic {
    TeardownOnPanic {
        footprint: footprint.clone(),
        options: options.clone(),
    }
}

impl Drop for TeardownOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let footprint = self.footprint.clone();
        let options = self.options.clone();
        // Drop cannot await, and the test's runtime is being unwound: the
        // teardown gets a thread and a runtime of its own, and a new client.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = shared_client().await;
                crate::teardown(&client, &footprint, &options)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => eprintln!("the panicking test's footprint was torn down"),
            Ok(Err(e)) => eprintln!("tearing down the panicking test's footprint failed: {e}"),
            Err(_) => eprintln!("tearing down the panicking test's footprint panicked"),
        }
    }
}
