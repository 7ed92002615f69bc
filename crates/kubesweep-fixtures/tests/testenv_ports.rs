//! The launcher's answer to the port race: `testenv/cluster up` picks free
//! ports by listening and closing, and the components bind them moments
//! later; a port another process took in between must make `up` start over
//! on new ports, not fail the test run.

use kubesweep_fixtures::harness::PrivateControlPlane;

/// A port that is free now (listened on and closed: the race itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn up_starts_over_on_new_ports_when_one_was_taken() {
    // Held for the whole test: kube-apiserver's first port is taken for sure.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let taken_port = taken.local_addr().expect("address").port();
    let ports = format!(
        "{},{},{taken_port},{}",
        free_port(),
        free_port(),
        free_port()
    );
    let plane = PrivateControlPlane::start_with_env(&[("TESTENV_FIRST_PORTS", &ports)]);

    // The first attempt did meet the taken port...
    let log = std::fs::read_to_string(plane.logs_dir().join("kube-apiserver.log"))
        .expect("kube-apiserver log");
    assert!(
        log.contains(&format!("127.0.0.1:{taken_port}")) && log.contains("address already in use"),
        "kube-apiserver never tried the taken port {taken_port}"
    );
    // ...and the control plane came up elsewhere, and serves.
    let client = plane.client().await;
    let server = kube::config::Kubeconfig::read_from(plane.kubeconfig())
        .expect("kubeconfig")
        .clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("server");
    assert!(
        !server.ends_with(&format!(":{taken_port}")),
        "still on the taken port: {server}"
    );
    let version = client.apiserver_version().await.expect("GET /version");
    assert!(version.git_version.starts_with("v1.37."), "{version:?}");
    drop(taken);
}
