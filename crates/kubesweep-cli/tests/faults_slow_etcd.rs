//! Fault 7 of issue 10: etcd on a slow disk. On a control plane of the
//! test's own, etcd is restarted to fsync again (the test environment
//! normally runs it with `--unsafe-no-fsync`) and moved into a cgroup whose
//! blkio throttle allows it only a few write operations per second on its
//! disk: every commit waits in the kernel, as on a saturated or failing
//! disk. `apply` must still finish with verify clean and nothing foreign
//! touched. etcd's own metrics (WAL fsync durations) prove that the disk
//! really was slow while `apply` ran.
//!
//! Needs root and the cgroup v1 blkio controller (`testenv/cluster
//! throttle-writes`); without them it fails, saying so, like every
//! integration test without its environment.

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

/// etcd's WAL fsyncs so far: (seconds spent, count), from its `/metrics`.
fn wal_fsyncs(etcd: &str) -> (f64, f64) {
    let address = etcd.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to etcd");
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("ask etcd for metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("etcd metrics");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in etcd's metrics"))
    };
    (
        value("etcd_disk_wal_fsync_duration_seconds_sum"),
        value("etcd_disk_wal_fsync_duration_seconds_count"),
    )
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
