//! Fault 7 of issue 10: etcd's disk slow or full, on a control plane of
//! each test's own.
//!
//! - Slow: etcd is restarted to fsync again (the test environment normally
//!   runs it with `--unsafe-no-fsync`) and moved into a cgroup whose blkio
//!   throttle allows it only a few write operations per second on its disk:
//!   every commit waits in the kernel, as on a saturated or failing disk.
//!   `apply` must still finish with verify clean and nothing foreign
//!   touched. etcd's own metrics (WAL fsync durations) prove that the disk
//!   really was slow while `apply` ran. Needs root and the cgroup v1 blkio
//!   controller (`testenv/cluster throttle-writes`); without them it fails,
//!   saying so, like every integration test without its environment.
//! - Full: etcd is restarted with a backend quota just under its database's
//!   size, so the first write that needs space raises etcd's NOSPACE alarm
//!   and from then every write that needs space is refused ("database space
//!   exceeded"; deletes need none and still pass). `apply` must stop with a
//!   clear error and touch nothing foreign; once the space is back (quota
//!   restored, alarm disarmed, as an operator would) a re-run finishes.

mod common;

use std::io::{Read, Write};

use common::*;
use kubesweep_fixtures::harness::PrivateControlPlane;
use kubesweep_fixtures::snapshot;

/// Write operations per second etcd gets: each commit costs it a few (WAL
/// and backend fsyncs), so a write through the API server takes tens of
/// milliseconds instead of one or two, while the run stays within a
/// minute.
const WRITE_IOPS: u32 = 40;

/// One HTTP/1.0 request to etcd's client URL (plain HTTP on loopback);
/// returns the response body.
fn etcd_http(etcd: &str, method: &str, path: &str, body: &str) -> String {
    let address = etcd.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to etcd");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send to etcd");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("etcd's answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.contains(" 200 "), "{method} {path}: {head}");
    body.to_string()
}

/// One value of etcd's `/metrics`.
fn etcd_metric(etcd: &str, name: &str) -> f64 {
    etcd_http(etcd, "GET", "/metrics", "")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in etcd's metrics"))
}

/// etcd's WAL fsyncs so far: (seconds spent, count).
fn wal_fsyncs(etcd: &str) -> (f64, f64) {
    (
        etcd_metric(etcd, "etcd_disk_wal_fsync_duration_seconds_sum"),
        etcd_metric(etcd, "etcd_disk_wal_fsync_duration_seconds_count"),
    )
}

/// etcd's raised alarms, as its maintenance API lists them (through its
/// JSON gateway): `[{"memberID": "...", "alarm": "NOSPACE"}]`.
fn etcd_alarms(etcd: &str) -> Vec<serde_json::Value> {
    let answer = etcd_http(etcd, "POST", "/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("alarms as JSON");
    answer["alarms"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_a_slow_etcd_disk_finishes_clean() {
    let started = std::time::Instant::now();
    // Its own control plane: the test slows etcd down.
    let plane = PrivateControlPlane::start();
    let client = plane.client().await;
    let footprint = seeded(&client).await;
    assert!(footprint.decoys().count() > 0, "the footprint has decoys");
    let before = snapshot(&client, &footprint).await.expect("snapshot");

    // Without fsync etcd's writes only reach the page cache, which the
    // throttle does not see.
    plane.restart_component("etcd", &["--unsafe-no-fsync=false"]);
    let etcd = plane.etcd_url();
    plane.throttle_writes("etcd", WRITE_IOPS);

    let (sum_before, count_before) = wal_fsyncs(&etcd);
    let apply_started = std::time::Instant::now();
    let out = kubesweep_as(&["apply", "--yes"], plane.kubeconfig());
    let apply_took = apply_started.elapsed();
    let (sum_after, count_after) = wal_fsyncs(&etcd);
    plane.throttle_writes("etcd", 0);

    let fsyncs = count_after - count_before;
    let mean_ms = 1000.0 * (sum_after - sum_before) / fsyncs.max(1.0);
    eprintln!(
        "apply {apply_took:.1?} with etcd limited to {WRITE_IOPS} writes/s: \
         {fsyncs} WAL fsyncs, {mean_ms:.1} ms each on average"
    );
    assert_applied_clean(&out);
    assert_verdict_clean(&client, &footprint, &before).await;
    // The fault really happened: unthrottled, a WAL fsync took 3.7 ms on
    // average on the (shared) test VM; throttled, 105 ms. At 40 operations
    // per second a saturated disk makes each one wait 25 ms at least.
    assert!(fsyncs >= 50.0, "only {fsyncs} WAL fsyncs during the run");
    assert!(
        mean_ms >= 25.0,
        "WAL fsyncs took {mean_ms:.1} ms on average: the disk was not slow"
    );

    // A fresh run on the healthy disk finds nothing left.
    let again = kubesweep_as(&["verify"], plane.kubeconfig());
    assert_eq!(again.status.code(), Some(0), "{}", explain(&again));
    eprintln!("test took {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_a_full_etcd_stops_clearly_and_a_rerun_finishes_once_there_is_space() {
    let started = std::time::Instant::now();
    // Its own control plane: the test fills etcd up.
    let plane = PrivateControlPlane::start();
    let client = plane.client().await;
    let footprint = seeded(&client).await;
    let before = snapshot(&client, &footprint).await.expect("snapshot");
    let etcd = plane.etcd_url();

    // A quota under the database's size: etcd compares its size with the
    // quota before each write that needs space.
    let size = etcd_metric(&etcd, "etcd_mvcc_db_total_size_in_bytes") as u64;
    plane.restart_component("etcd", &[&format!("--quota-backend-bytes={}", size - 4096)]);
    let out = kubesweep_as(&["apply", "--yes"], plane.kubeconfig());
    let alarms = etcd_alarms(&etcd);
    eprintln!(
        "full etcd (quota {} of {size} bytes): {}",
        size - 4096,
        explain(&out)
    );
    assert!(
        alarms.iter().any(|a| a["alarm"] == "NOSPACE"),
        "etcd never ran out of space: {alarms:?}"
    );
    // Failed actions: exit 1, and the error names the cause.
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(
        stderr(&out).contains("database space exceeded"),
        "{}",
        explain(&out)
    );
    assert_verdict_clean(&client, &footprint, &before).await;

    // What an operator does: more space (the quota back to the default),
    // then the alarm disarmed.
    plane.restart_component("etcd", &[]);
    for alarm in alarms {
        let disarm = serde_json::json!({
            "action": "DEACTIVATE", "memberID": alarm["memberID"], "alarm": alarm["alarm"]
        });
        etcd_http(&etcd, "POST", "/v3/maintenance/alarm", &disarm.to_string());
    }
    assert_eq!(etcd_alarms(&etcd), Vec::<serde_json::Value>::new());
    let again = kubesweep_as(&["apply", "--yes"], plane.kubeconfig());
    assert_applied_clean(&again);
    assert_verdict_clean(&client, &footprint, &before).await;
    eprintln!("test took {:.1?}", started.elapsed());
}
