#!/usr/bin/env python3
"""Runs the suite's test binaries side by side, in a few lanes.

`cargo test` runs one test binary after another, and most of ours spend
their time waiting on the cluster's controllers, not on the CPU: running
several at once is where the suite's time goes down. Isolation between
binaries is the tests' own business (they take the cross-process flock
`cluster_lock()`/`cluster_share()` next to the kubeconfig, or start a
control plane of their own), exactly as between the threads of one binary.

    lanes.py list < cargo-json            test executables from
                                          `cargo test --no-run --message-format=json`
                                          as `name<TAB>package dir<TAB>executable`
    lanes.py run --lanes N JOBS           run the jobs of the file JOBS
                                          (`name<TAB>working dir<TAB>ready file<TAB>shell command`:
                                          a job starts only once its ready file exists; `-`: at once)

`run` starts the longest jobs first (durations remembered from the last run
in `--durations FILE`; a job never seen counts as longest), keeps each job's
output in a file and prints it whole when the job ends (so outputs never
interleave), kills a job's whole process group past `--timeout` seconds, and
exits 1 when any job failed, after a table of every job's time. Each job
gets its lane's number (0 to N-1) in KUBESWEEP_LANE: no two running jobs
share one.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def list_executables(stream):
    """Test executables named in cargo's JSON messages, one per target."""
    seen = set()
    for line in stream:
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        package_dir = os.path.dirname(msg["manifest_path"])
        package = os.path.basename(package_dir)
        # An integration test binary is named after its file; a crate's own
        # unit tests after the package and the target (a lib and a bin of
        # one package both have some).
        if "test" in target["kind"]:
            name = target["name"]
        else:
            name = f"{package}({target['kind'][0]} {target['name']})"
        if name in seen:
            continue
        seen.add(name)
        print(f"{name}\t{package_dir}\t{msg['executable']}")


def read_jobs(path):
    jobs = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, cwd, ready, command = line.split("\t", 3)
            jobs.append((name, cwd, ready, command))
    return jobs


def read_durations(path):
    durations = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, _, seconds = line.rstrip("\n").partition("\t")
                try:
                    durations[name] = float(seconds)
                except ValueError:
                    pass
    return durations


def write_durations(path, durations):
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for name, seconds in sorted(durations.items()):
            f.write(f"{name}\t{seconds:.1f}\n")
    os.replace(tmp, path)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(args):
    jobs = read_jobs(args.jobs)
    known = read_durations(args.durations)
    # Longest first, so the last lane to finish is not the one that started
    # the longest job late; unknown jobs are treated as the longest.
    order = sorted(jobs, key=lambda j: -known.get(j[0], float("inf")))
    pending = list(order)
    running = {}  # pid -> (name, proc, start, log path, lane)
    results = []  # (name, seconds, ok, why)
    logdir = tempfile.mkdtemp(prefix="kubesweep-lanes.")

    def start(job):
        name, cwd, _ready, command = job
        log_path = os.path.join(logdir, name.replace("/", "_") + ".log")
        log = open(log_path, "w")
        busy = {entry[4] for entry in running.values()}
        lane = min(set(range(args.lanes)) - busy)
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Which lane's resources (its cluster) the job uses.
            env={**os.environ, "KUBESWEEP_LANE": str(lane)},
            start_new_session=True,  # its own process group, killed whole on timeout
        )
        log.close()
        running[proc.pid] = (name, proc, time.monotonic(), log_path, lane)
        print(f"--- start {name} in lane {lane}", flush=True)

    def interrupted(signum, _frame):
        for _, proc, _, _, _ in running.values():
            kill_group(proc)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)

    while pending or running:
        for job in list(pending):
            if len(running) >= args.lanes:
                break
            if job[2] == "-" or os.path.exists(job[2]):
                pending.remove(job)
                start(job)
        time.sleep(0.5)
        for pid in list(running):
            name, proc, started, log_path, lane = running[pid]
            elapsed = time.monotonic() - started
            status = proc.poll()
            why = None
            if status is None:
                if elapsed <= args.timeout:
                    continue
                kill_group(proc)
                proc.wait()
                why = f"killed after {args.timeout} s (timeout)"
            elif status != 0:
                why = f"exit status {status}"
            del running[pid]
            # The job's children (a kubesweep it ran, a helm) go with it.
            kill_group(proc)
            ok = why is None
            results.append((name, elapsed, ok, why))
            print(f"=== {name} (lane {lane}): {'ok' if ok else 'FAILED: ' + why} in {elapsed:.0f} s", flush=True)
            with open(log_path, errors="replace") as log:
                sys.stdout.write(log.read())
            print(f"=== end of {name}", flush=True)
            if ok:
                known[name] = elapsed
    write_durations(args.durations, known)

    print("\njob times (seconds, lanes: %d):" % args.lanes)
    for name, seconds, ok, why in sorted(results, key=lambda r: -r[1]):
        print(f"  {seconds:7.1f}  {name}{'' if ok else '  FAILED: ' + why}")
    failed = [r[0] for r in results if not r[2]]
    if failed:
        print("failed: " + " ".join(failed), file=sys.stderr)
        return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    r = sub.add_parser("run")
    r.add_argument("jobs")
    r.add_argument("--lanes", type=int, default=3)
    r.add_argument("--timeout", type=int, default=1200)
    r.add_argument("--durations")
    args = parser.parse_args()
    if args.cmd == "list":
        list_executables(sys.stdin)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
