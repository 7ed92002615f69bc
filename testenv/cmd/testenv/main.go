// Command testenv starts, inspects and stops the local Kubernetes control plane
// used by kubesweep's integration tests, demo and benchmarks: etcd,
// kube-apiserver and kube-controller-manager as plain processes on loopback.
//
// All state (pids, logs, certificates, etcd data, kubeconfig) lives in one
// directory so that `down` can stop exactly what `up` started.
//
//	testenv up     -bin DIR -state DIR   start (or report the running cluster)
//	testenv status -state DIR            exit 0 when every component answers
//	testenv down   -state DIR            stop the processes, remove the state, keep logs
//	testenv stop   -state DIR COMPONENT  stop one component, keep its state (tests of a control plane with a part down)
//	testenv start  -state DIR COMPONENT  start a stopped component again, same binary, ports and flags; wait until ready
//	testenv restart -state DIR COMPONENT [-- FLAG...]
//	                                     stop it if it runs and start it again on the same ports with FLAG...
//	                                     added to its flags (none: back to the flags of up); wait until ready
//	testenv node-up -state DIR -node-bin DIR -containerd-bin DIR [-image FILE]...
//	                                     attach a node (kube-scheduler, containerd, kubelet; node.go)
//	testenv node-import -state DIR -containerd-bin DIR FILE...
//	                                     import OCI image archives into the node's containerd
//	testenv node-down -state DIR         remove the node (down does it too)
//	testenv throttle-writes -state DIR COMPONENT IOPS
//	                                     limit the component's writes to the disk under DIR to IOPS
//	                                     per second (cgroup v1 blkio; root); 0 lifts the limit
//
// Ports are picked free by listening and closing, and bound moments later by
// the components; when another process takes one in between, the component
// exits with "address already in use" and up starts over with new ports
// (start and restart, whose ports are fixed, try the same ones again).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// component is one process of the control plane.
type component struct {
	name string
	// ready answers 200 once the component serves (used by start).
	ready string
	args  []string
}

// launch is what `up` records for each component so that `start` can run it
// again exactly as before (same executable, ports and flags).
type launch struct {
	Exe  string   `json:"exe"`
	Args []string `json:"args"`
	// Ready is the URL that answers 200 once the component serves.
	Ready string `json:"ready"`
	// Extra are the flags `restart` added after Args (later flags win), kept
	// so that a `stop` and `start` afterwards runs it the same way.
	Extra []string `json:"extra,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testenv up|down|status|stop|start|restart|throttle-writes|node-up|node-import|node-down [-state DIR] [-bin DIR] [COMPONENT [-- FLAG...] | COMPONENT IOPS]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	stateDir := fs.String("state", ".testenv", "directory holding pids, logs, certificates and the kubeconfig")
	binDir := fs.String("bin", "", "directory holding etcd, kube-apiserver and kube-controller-manager (up only)")
	nodeBin := fs.String("node-bin", "", "directory holding kubelet, kube-scheduler and pause.oci.tar (node-up only)")
	containerdBin := fs.String("containerd-bin", "", "directory holding containerd, its shim and ctr (node-up, node-import)")
	var images stringList
	fs.Var(&images, "image", "an OCI image archive the node imports (node-up; repeatable)")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long up waits for the control plane to be ready")
	_ = fs.Parse(os.Args[2:])

	abs, err := filepath.Abs(*stateDir)
	if err != nil {
		fatal("state dir: %v", err)
	}
	switch cmd {
	case "up":
		if *binDir == "" {
			fatal("up needs -bin")
		}
		err = up(abs, *binDir, *timeout)
	case "down":
		err = down(abs)
	case "node-up":
		if *nodeBin == "" || *containerdBin == "" {
			fatal("node-up needs -node-bin and -containerd-bin")
		}
		err = nodeUp(abs, *nodeBin, *containerdBin, images, *timeout)
	case "node-import":
		if *containerdBin == "" || fs.NArg() == 0 {
			fatal("node-import needs -containerd-bin and one or more OCI archives")
		}
		err = nodeImport(abs, *containerdBin, fs.Args())
	case "node-down":
		err = nodeDetach(abs)
	case "status":
		err = status(abs)
	case "stop", "start":
		if fs.NArg() != 1 || !known(fs.Arg(0)) {
			fatal("%s needs one component: %s", cmd, strings.Join(componentNames, ", "))
		}
		if cmd == "stop" {
			err = stopOne(abs, fs.Arg(0))
		} else {
			err = startOne(abs, fs.Arg(0), *timeout)
		}
	case "throttle-writes":
		if fs.NArg() != 2 || !known(fs.Arg(0)) {
			fatal("throttle-writes needs a component (%s) and write operations per second (0: no limit)", strings.Join(componentNames, ", "))
		}
		iops, perr := strconv.Atoi(fs.Arg(1))
		if perr != nil || iops < 0 {
			fatal("throttle-writes: %q is not a number of operations per second", fs.Arg(1))
		}
		err = throttleWrites(abs, fs.Arg(0), iops)
	case "restart":
		args := fs.Args()
		if len(args) < 1 || !known(args[0]) {
			fatal("restart needs one component (%s), then optionally -- and its extra flags", strings.Join(componentNames, ", "))
		}
		extra := args[1:]
		if len(extra) > 0 && extra[0] == "--" {
			extra = extra[1:]
		}
		err = restartOne(abs, args[0], extra, *timeout)
	default:
		fatal("unknown command %q (want up, down, status, stop, start, restart, throttle-writes, node-up, node-import or node-down)", cmd)
	}
	if err != nil {
		fatal("%s: %v", cmd, err)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}

// Component start order; down stops them in reverse.
var componentNames = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// errPortTaken: a component could not bind a port picked for it, because
// another process took it after it was found free.
var errPortTaken = errors.New("a port picked as free was taken before the component bound it")

// portAttempts bounds how often up picks new ports after errPortTaken.
const portAttempts = 5

func up(state, bin string, timeout time.Duration) error {
	if status(state) == nil {
		logf("control plane already running in %s", state)
		fmt.Printf("KUBECONFIG=%s\n", filepath.Join(state, "kubeconfig"))
		return nil
	}
	// Tests of the retry below force the first attempt's ports (a comma-separated
	// list of four: etcd client, etcd peer, kube-apiserver, kube-controller-manager).
	forced, err := parsePorts(os.Getenv("TESTENV_FIRST_PORTS"))
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err = upOnce(state, bin, timeout, forced)
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return err
		}
		logf("%v; starting over with new ports (attempt %d of %d)", err, attempt+1, portAttempts)
		forced = nil
	}
}

// parsePorts reads TESTENV_FIRST_PORTS; empty means none.
func parsePorts(text string) ([]int, error) {
	if text == "" {
		return nil, nil
	}
	var ports []int
	for _, field := range strings.Split(text, ",") {
		port, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("TESTENV_FIRST_PORTS: %q is not a port", field)
		}
		ports = append(ports, port)
	}
	if len(ports) != 4 {
		return nil, fmt.Errorf("TESTENV_FIRST_PORTS needs 4 ports, got %d", len(ports))
	}
	return ports, nil
}

// upOnce starts the control plane on fresh ports (forced ones when given);
// on failure everything it started is stopped again.
func upOnce(state, bin string, timeout time.Duration, forced []int) error {
	// Leftovers of a crashed run: stop whatever of it still lives, start clean.
	if err := down(state); err != nil {
		return fmt.Errorf("cleaning previous state: %w", err)
	}
	for _, dir := range []string{"pki", "logs", "run", "etcd-data"} {
		if err := os.MkdirAll(filepath.Join(state, dir), 0o700); err != nil {
			return err
		}
	}
	pki := filepath.Join(state, "pki")
	if err := writePKI(pki); err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	ports := forced
	if ports == nil {
		var err error
		if ports, err = freePorts(4); err != nil {
			return err
		}
	}
	etcdClient, etcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kubeconfig := filepath.Join(state, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, pki); err != nil {
		return err
	}
	p := func(name string) string { return filepath.Join(pki, name) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)

	components := []component{
		// Ready while serving, even with its NOSPACE alarm raised (a test
		// fills it up, then restarts it with more room before disarming).
		{"etcd", etcdURL + "/health?exclude=NOSPACE", []string{
			"--name=testenv",
			"--data-dir=" + filepath.Join(state, "etcd-data"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=testenv=" + peerURL,
			// A throwaway test store: durability across power loss is not needed,
			// and fsync dominates latency on small VMs.
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		}},
		{"kube-apiserver", server + "/readyz", []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--tls-cert-file=" + p("apiserver.crt"),
			"--tls-private-key-file=" + p("apiserver.key"),
			"--client-ca-file=" + p("ca.crt"),
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p("sa.pub"),
			"--service-account-signing-key-file=" + p("sa.key"),
			"--service-cluster-ip-range=10.0.0.0/24",
			// Loopback addresses are not valid Endpoints; without a reconciler the
			// apiserver does not try to publish itself there.
			"--endpoint-reconciler-type=none",
			// Aggregated APIServices are proxied with this identity.
			"--requestheader-client-ca-file=" + p("ca.crt"),
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + p("front-proxy.crt"),
			"--proxy-client-key-file=" + p("front-proxy.key"),
			// A node (node-up) registers a name that does not resolve: logs and
			// exec go to its address, with the admin's certificate (the kubelet
			// trusts the cluster's CA). Inert without a node.
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-client-certificate=" + p("admin.crt"),
			"--kubelet-client-key=" + p("admin.key"),
			"--v=1",
		}},
		{"kube-controller-manager", fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), []string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(kcmPort),
			"--leader-elect=false",
			"--service-account-private-key-file=" + p("sa.key"),
			"--root-ca-file=" + p("ca.crt"),
			"--cluster-signing-cert-file=" + p("ca.crt"),
			"--cluster-signing-key-file=" + p("ca.key"),
			// What an uninstaller's behaviour depends on: namespace deletion, garbage
			// collection, Deployments scaling their ReplicaSets and pods, and the
			// removal of the `kubernetes.io/pvc-protection` finalizer the API server
			// puts on every PersistentVolumeClaim (without it no claim, and no
			// namespace holding one, can ever be deleted).
			"--controllers=" + baseControllers,
			"--v=1",
		}},
	}

	for _, c := range components {
		logStart := logSize(state, c.name)
		if err := start(state, bin, c); err != nil {
			_ = down(state)
			return err
		}
		logf("started %s", c.name)
		var err error
		switch c.name {
		case "etcd":
			err = waitReady(state, c.name, timeout, func() error { return httpOK(nil, c.ready) })
		case "kube-apiserver":
			client, cerr := adminHTTPClient(pki)
			if cerr != nil {
				err = cerr
				break
			}
			err = waitReady(state, c.name, timeout, func() error { return httpOK(client, server+"/readyz") })
		case "kube-controller-manager":
			err = waitReady(state, c.name, timeout, func() error { return controllersWorking(pki, server) })
		}
		if err != nil {
			logf("%s did not become ready: %v; its log: %s", c.name, err, logPath(state, c.name))
			tail(logPath(state, c.name), 30)
			_ = down(state)
			if bindFailed(state, c.name, logStart) {
				return fmt.Errorf("%s: %w", c.name, errPortTaken)
			}
			return fmt.Errorf("%s not ready", c.name)
		}
		logf("%s ready", c.name)
	}
	if err := os.WriteFile(filepath.Join(state, "server"), []byte(server+"\n"), 0o600); err != nil {
		return err
	}
	logf("control plane up at %s (logs in %s)", server, filepath.Join(state, "logs"))
	fmt.Printf("KUBECONFIG=%s\n", kubeconfig)
	return nil
}

// logSize is how long the component's log is now (its logs are appended to
// across runs), so that what a new process writes can be read on its own.
func logSize(state, name string) int64 {
	info, err := os.Stat(logPath(state, name))
	if err != nil {
		return 0
	}
	return info.Size()
}

// bindFailed reports whether the component's log, from offset on, says a
// port was already in use (etcd, kube-apiserver and kube-controller-manager
// all report Go's "bind: address already in use" and exit).
func bindFailed(state, name string, offset int64) bool {
	f, err := os.Open(logPath(state, name))
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	data, err := io.ReadAll(f)
	return err == nil && strings.Contains(string(data), "address already in use")
}

func logPath(state, name string) string { return filepath.Join(state, "logs", name+".log") }
func pidPath(state, name string) string { return filepath.Join(state, "run", name+".pid") }
func launchPath(state, name string) string {
	return filepath.Join(state, "run", name+".launch.json")
}

// start launches one component in its own session so that it outlives this
// command, with output appended to its log file.
func start(state, bin string, c component) error {
	exe := filepath.Join(bin, c.name)
	cmd, err := spawn(state, c.name, exe, c.args)
	if err != nil {
		return err
	}
	// start reruns the component from this record.
	record, err := json.Marshal(launch{Exe: exe, Args: c.args, Ready: c.ready})
	if err != nil {
		return err
	}
	if err := os.WriteFile(launchPath(state, c.name), record, 0o600); err != nil {
		return err
	}
	return recordPid(state, c.name, cmd, exe)
}

// recordPid writes the pid file and lets the process live on its own.
func recordPid(state, name string, cmd *exec.Cmd, exe string) error {
	// The pid file records the executable too, so down never signals a
	// recycled pid that now belongs to something else.
	record := fmt.Sprintf("%d %s\n", cmd.Process.Pid, exe)
	if err := os.WriteFile(pidPath(state, name), []byte(record), 0o600); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// spawn starts exe in its own session, output appended to the component's log.
func spawn(state, name, exe string, args []string) (*exec.Cmd, error) {
	logFile, err := os.OpenFile(logPath(state, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	return cmd, nil
}

func known(name string) bool {
	for _, n := range componentNames {
		if n == name {
			return true
		}
	}
	return false
}

// stopOne stops one component the way down does, keeping all state so that
// startOne can bring it back.
func stopOne(state, name string) error {
	if _, err := os.Stat(launchPath(state, name)); err != nil {
		return fmt.Errorf("no %s recorded in %s (is the control plane up?)", name, state)
	}
	if err := terminate(state, name); err != nil {
		return err
	}
	logf("%s stopped; `start %s` brings it back", name, name)
	return nil
}

// startOne runs a stopped component again from its launch record and waits
// until it answers; a running one is left alone.
func startOne(state, name string, timeout time.Duration) error {
	if alive(state, name) {
		logf("%s already running", name)
		return nil
	}
	l, err := readLaunch(state, name)
	if err != nil {
		return err
	}
	if err := run(state, name, l, timeout); err != nil {
		return err
	}
	logf("%s started again and ready", name)
	return nil
}

// restartOne stops a component if it runs and starts it again from its
// launch record with extra added to its flags (replacing the extra flags of
// an earlier restart), on the same ports; it waits until it answers.
// Tests use it to run kube-apiserver with other limits.
func restartOne(state, name string, extra []string, timeout time.Duration) error {
	l, err := readLaunch(state, name)
	if err != nil {
		return err
	}
	// Only the process goes: its state (etcd's data) stays, so there is
	// nothing to shut down gracefully, and kube-apiserver lingers 15 s after
	// it has stopped listening.
	if err := terminateWithin(state, name, 2*time.Second); err != nil {
		return err
	}
	l.Extra = extra
	record, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := os.WriteFile(launchPath(state, name), record, 0o600); err != nil {
		return err
	}
	if err := run(state, name, l, timeout); err != nil {
		return err
	}
	logf("%s restarted with extra flags %q and ready", name, extra)
	return nil
}

// readLaunch reads what up (or restart) recorded for a component.
func readLaunch(state, name string) (launch, error) {
	var l launch
	data, err := os.ReadFile(launchPath(state, name))
	if err != nil {
		return l, fmt.Errorf("no %s recorded in %s (is the control plane up?): %w", name, state, err)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("reading %s: %w", launchPath(state, name), err)
	}
	return l, nil
}

// rebindAttempts bounds how often run starts a component again whose port
// was in use.
const rebindAttempts = 10

// run starts a component from its launch record and waits until it answers.
// Its ports are fixed (clients know them), so when one is in use it tries
// again a little later: on loopback the holder is mostly a passing outgoing
// connection that happened to get that port as its local ephemeral port
// (seen: etcd's peer port, moments after the old etcd was killed).
func run(state, name string, l launch, timeout time.Duration) error {
	client, err := probeClient(state, name)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		logStart := logSize(state, name)
		cmd, err := spawn(state, name, l.Exe, append(slices.Clip(l.Args), l.Extra...))
		if err != nil {
			return err
		}
		if err := recordPid(state, name, cmd, l.Exe); err != nil {
			return err
		}
		err = waitReady(state, name, timeout, func() error { return httpOK(client, l.Ready) })
		if err == nil {
			return nil
		}
		if bindFailed(state, name, logStart) && attempt < rebindAttempts && !alive(state, name) {
			logf("%s: its port is in use; trying again in a second (attempt %d of %d)", name, attempt+1, rebindAttempts)
			time.Sleep(time.Second)
			continue
		}
		tail(logPath(state, name), 30)
		return fmt.Errorf("%s not ready: %w", name, err)
	}
}

// probeClient is the HTTP client that can ask a component whether it is
// ready: none for etcd (plain HTTP), the admin identity for the API server,
// and for kube-controller-manager, whose serving certificate is self-signed
// and whose /healthz is open to anyone, TLS without verification.
func probeClient(state, name string) (*http.Client, error) {
	switch name {
	case "kube-apiserver":
		return adminHTTPClient(filepath.Join(state, "pki"))
	case "kube-controller-manager":
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // loopback probe of a self-signed test component
		}}, nil
	default:
		return nil, nil
	}
}

// ourProcess returns the pid recorded for a component when that pid is still
// running the recorded executable.
func ourProcess(state, name string) (int, bool) {
	data, err := os.ReadFile(pidPath(state, name))
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != fields[1] {
		return 0, false
	}
	return pid, true
}

func down(state string) error {
	// The node first: its containers, mounts and cgroups outlive nothing.
	if err := nodeDown(state); err != nil {
		return err
	}
	for i := len(componentNames) - 1; i >= 0; i-- {
		if err := terminate(state, componentNames[i]); err != nil {
			return err
		}
		// Empty now that its process is gone.
		if group, err := os.ReadFile(cgroupRecord(state, componentNames[i])); err == nil {
			if err := os.Remove(string(group)); err != nil && !errors.Is(err, os.ErrNotExist) {
				logf("cannot remove cgroup %s: %v", group, err)
			}
		}
	}
	// Logs stay for diagnosis; everything else is state of this run only.
	for _, entry := range []string{"run", "pki", "etcd-data", "kubeconfig", "server"} {
		if err := os.RemoveAll(filepath.Join(state, entry)); err != nil {
			return err
		}
	}
	return nil
}

// terminate stops one component if it runs (SIGTERM, SIGKILL after 15 s).
func terminate(state, name string) error {
	return terminateWithin(state, name, 15*time.Second)
}

// terminateWithin stops one component if it runs: SIGTERM, SIGKILL after grace.
func terminateWithin(state, name string, grace time.Duration) error {
	pid, ok := ourProcess(state, name)
	if !ok {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(state, name) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(state, name) {
		logf("%s (pid %d) ignored SIGTERM, killing", name, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for alive(state, name) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	logf("stopped %s (pid %d)", name, pid)
	return nil
}

// alive reports whether the component's process still exists and is not a zombie.
func alive(state, name string) bool {
	pid, ok := ourProcess(state, name)
	if !ok {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 (after the parenthesised command) is the state; Z is a zombie.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func status(state string) error {
	for _, name := range componentNames {
		if !alive(state, name) {
			return fmt.Errorf("%s is not running (state %s)", name, state)
		}
	}
	server, err := os.ReadFile(filepath.Join(state, "server"))
	if err != nil {
		return errors.New("control plane is starting or its state is incomplete")
	}
	client, err := adminHTTPClient(filepath.Join(state, "pki"))
	if err != nil {
		return err
	}
	url := strings.TrimSpace(string(server))
	if err := httpOK(client, url+"/readyz"); err != nil {
		return fmt.Errorf("kube-apiserver at %s not ready: %w", url, err)
	}
	fmt.Printf("control plane up at %s\nKUBECONFIG=%s\n", url, filepath.Join(state, "kubeconfig"))
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls check until it succeeds, the timeout passes, or the
// component's process has exited (a bad flag, a port in use: waiting on
// would only waste the timeout).
func waitReady(state, name string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return nil
		}
		if !alive(state, name) {
			return fmt.Errorf("%s exited: %v", name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return err
}

func httpOK(client *http.Client, url string) error {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func adminHTTPClient(pki string) (*http.Client, error) {
	tlsConfig, err := adminTLS(pki)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}, nil
}

// controllersWorking proves kube-controller-manager is running its controllers:
// the serviceaccount controller creates `default` in every namespace.
func controllersWorking(pki, server string) error {
	client, err := adminHTTPClient(pki)
	if err != nil {
		return err
	}
	return httpOK(client, server+"/api/v1/namespaces/kube-system/serviceaccounts/default")
}

func tail(path string, lines int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	for _, l := range all {
		fmt.Fprintln(os.Stderr, "  "+l)
	}
}

// blkioRoot is where cgroup v1 mounts its blkio controller.
const blkioRoot = "/sys/fs/cgroup/blkio"

// cgroupRecord names the file holding the cgroup throttleWrites made for a
// component, so that down (or a later call) can remove it.
func cgroupRecord(state, name string) string {
	return filepath.Join(state, "run", name+".cgroup")
}

// throttleWrites moves a running component into a cgroup of its own whose
// blkio throttle allows iops write operations per second on the disk that
// holds the state directory (iops 0: back to the root group, the cgroup
// removed). A slow disk for real: etcd's fsyncs queue in the kernel. Only
// synchronous writes are throttled (cgroup v1 does not attribute page-cache
// writeback), so etcd must run with --unsafe-no-fsync=false. Needs root and
// the cgroup v1 blkio controller; says so when either is missing.
func throttleWrites(state, name string, iops int) error {
	pid, ok := ourProcess(state, name)
	if !ok {
		return fmt.Errorf("%s is not running", name)
	}
	if _, err := os.Stat(filepath.Join(blkioRoot, "blkio.throttle.write_iops_device")); err != nil {
		return fmt.Errorf("throttling writes needs the cgroup v1 blkio controller at %s (cgroup v2 io.max is not supported): %w", blkioRoot, err)
	}
	group := filepath.Join(blkioRoot, "kubesweep-testenv-"+filepath.Base(state)+"-"+name)
	record := cgroupRecord(state, name)
	if iops == 0 {
		if err := os.WriteFile(filepath.Join(blkioRoot, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving %s back to the root cgroup: %w", name, err)
		}
		if err := os.Remove(group); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		_ = os.Remove(record)
		logf("%s writes no longer throttled", name)
		return nil
	}
	device, err := diskOf(state)
	if err != nil {
		return err
	}
	if err := os.Mkdir(group, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating cgroup %s (root needed): %w", group, err)
	}
	if err := os.WriteFile(record, []byte(group), 0o600); err != nil {
		return err
	}
	limit := fmt.Sprintf("%s %d", device, iops)
	if err := os.WriteFile(filepath.Join(group, "blkio.throttle.write_iops_device"), []byte(limit), 0o644); err != nil {
		return fmt.Errorf("setting %q in %s: %w", limit, group, err)
	}
	if err := os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving %s (pid %d) into %s: %w", name, pid, group, err)
	}
	logf("%s (pid %d) limited to %d write operations per second on disk %s", name, pid, iops, device)
	return nil
}

// diskOf returns "major:minor" of the whole disk holding path: blkio
// throttles disks, not partitions, and has nothing to throttle on a
// filesystem without one (tmpfs, overlay).
func diskOf(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return "", fmt.Errorf("%s is not on a block device (device %d:%d): nothing to throttle", path, major, minor)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	whole, err := os.ReadFile(filepath.Join(sys, "dev"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(whole)), nil
}
