// The testenv node: kube-scheduler, containerd and a kubelet attached to a
// running control plane, so that pods (a Helm hook's Job) really run.
//
//	testenv node-up -state DIR -node-bin DIR -containerd-bin DIR [-image FILE]...
//	testenv node-import -state DIR FILE...
//
// Everything the node makes lives under DIR/node (containerd's root, state
// and socket, the kubelet's root and pod logs, the CNI configuration and
// address store) plus three things outside it, each named after the state
// directory so that two clusters on one machine never share them: a cgroup
// per controller hierarchy (the kubelet's cgroupRoot), a bridge interface for
// pods without host networking, and the mounts containerd and the kubelet
// make (all under DIR/node). down (nodeDown) kills the containers through
// their cgroups, the shims by their socket, unmounts what is under DIR/node,
// removes the cgroups and the bridge, then DIR/node.
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NodeName is the name the kubelet registers.
const NodeName = "testenv-node"

// Node components in start order; nodeDown stops them in reverse.
var nodeComponentNames = []string{"kube-scheduler", "containerd", "kubelet"}

// baseControllers are the controllers of plain up; the node adds those a Job
// needs, and the node lifecycle controller, which lifts the not-ready taint a
// kubelet registers its node with, and the publisher of kube-root-ca.crt,
// which every pod's service-account volume mounts (the pod garbage collector
// also removes the pods of a deleted node).
const (
	baseControllers = "namespace,garbagecollector,serviceaccount,serviceaccount-token,clusterrole-aggregation,deployment,replicaset,pvc-protection"
	nodeControllers = baseControllers + ",job-controller,ttl-after-finished-controller,pod-garbage-collector-controller,node-lifecycle-controller,root-ca-certificate-publisher-controller"
)

// Images the node's containerd knows by these names (imported, never pulled).
const sandboxImage = "docker.io/library/pause:testenv"

func nodeDir(state string) string { return filepath.Join(state, "node") }

// machineKey names the node's machine-wide objects after the state
// directory: 8 hex digits of its path.
func machineKey(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:4])
}

func cgroupName(state string) string { return "kubesweep-testenv-" + machineKey(state) }
func bridgeName(state string) string { return "ksw" + machineKey(state) }
func containerdSocket(state string) string {
	return filepath.Join(nodeDir(state), "containerd.sock")
}

// cgroupHierarchies lists the cgroup v1 controller mounts the kubelet uses.
func cgroupHierarchies() []string {
	var dirs []string
	for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "hugetlb", "net_cls", "net_prio", "perf_event", "unified"} {
		dir := filepath.Join("/sys/fs/cgroup", c)
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

func nodeUp(state, nodeBin, containerdBin string, images []string, timeout time.Duration) error {
	if !alive(state, "kube-apiserver") {
		return fmt.Errorf("the control plane in %s must be up first (testenv/cluster up)", state)
	}
	if alive(state, "kubelet") && alive(state, "containerd") && alive(state, "kube-scheduler") {
		logf("node already running in %s", state)
		return nodeImport(state, containerdBin, images)
	}
	// Leftovers of a crashed node: remove them, start clean.
	if err := nodeDown(state); err != nil {
		return fmt.Errorf("cleaning the previous node: %w", err)
	}
	dir := nodeDir(state)
	for _, d := range []string{"containerd/root", "containerd/state", "containerd/opt", "cni/conf", "cni/ipam", "kubelet", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	// The node record is written before anything starts, so that down
	// cleans up even after a half-started node.
	if err := os.WriteFile(filepath.Join(dir, "machine-key"), []byte(machineKey(state)+"\n"), 0o600); err != nil {
		return err
	}
	pki := filepath.Join(state, "pki")
	serverText, err := os.ReadFile(filepath.Join(state, "server"))
	if err != nil {
		return err
	}
	server := strings.TrimSpace(string(serverText))
	admin, err := adminHTTPClient(pki)
	if err != nil {
		return err
	}

	// The controllers a Job needs: kube-controller-manager again with more.
	if err := restartOne(state, "kube-controller-manager", []string{"--controllers=" + nodeControllers}, timeout); err != nil {
		return err
	}

	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	schedPort, kubeletPort, kubeletHealthz := ports[0], ports[1], ports[2]
	kubeconfig := filepath.Join(state, "kubeconfig")
	scheduler := component{"kube-scheduler", fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort), []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--leader-elect=false",
		"--v=1",
	}}
	if err := start(state, nodeBin, scheduler); err != nil {
		return nodeFailed(state, err)
	}
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // loopback probe of a self-signed test component
	}}
	if err := waitReady(state, "kube-scheduler", timeout, func() error { return httpOK(insecure, scheduler.ready) }); err != nil {
		return nodeFailed(state, fmt.Errorf("kube-scheduler not ready: %w", err))
	}
	logf("kube-scheduler ready")

	// containerd, with every path under the node directory.
	if err := writeCNIConfig(state); err != nil {
		return nodeFailed(state, err)
	}
	ctrdConfig := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(ctrdConfig, []byte(containerdConfig(state)), 0o600); err != nil {
		return nodeFailed(state, err)
	}
	ctrd := component{"containerd", "", []string{"--config=" + ctrdConfig}}
	if err := start(state, containerdBin, ctrd); err != nil {
		return nodeFailed(state, err)
	}
	if err := waitReady(state, "containerd", timeout, func() error { return ctr(state, containerdBin, "version") }); err != nil {
		return nodeFailed(state, fmt.Errorf("containerd not ready: %w", err))
	}
	logf("containerd ready")
	// The sandbox image first: no pod starts without it.
	if err := nodeImport(state, containerdBin, append([]string{filepath.Join(nodeBin, "pause.oci.tar")}, images...)); err != nil {
		return nodeFailed(state, err)
	}

	// The kubelet: its own identity (system:node:<name>, bound to the
	// system:node role: the API server here authorizes by RBAC only).
	if err := writeKubeletIdentity(state, server); err != nil {
		return nodeFailed(state, err)
	}
	if err := bindNodeRole(admin, server); err != nil {
		return nodeFailed(state, err)
	}
	if err := injectAPIAddress(admin, server, timeout); err != nil {
		return nodeFailed(state, err)
	}
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, cgroupName(state)), 0o755); err != nil {
			return nodeFailed(state, fmt.Errorf("creating the node's cgroup (root and cgroup v1 needed): %w", err))
		}
	}
	kubeletConfig := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kubeletConfig, []byte(kubeletConfiguration(state, kubeletPort, kubeletHealthz)), 0o600); err != nil {
		return nodeFailed(state, err)
	}
	kubelet := component{"kubelet", fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthz), []string{
		"--config=" + kubeletConfig,
		"--kubeconfig=" + filepath.Join(dir, "kubelet.kubeconfig"),
		"--root-dir=" + filepath.Join(dir, "kubelet"),
		"--cert-dir=" + filepath.Join(dir, "kubelet", "pki"),
		"--hostname-override=" + NodeName,
		"--v=1",
	}}
	if err := start(state, nodeBin, kubelet); err != nil {
		return nodeFailed(state, err)
	}
	if err := waitReady(state, "kubelet", timeout, func() error { return nodeReady(admin, server) }); err != nil {
		return nodeFailed(state, fmt.Errorf("node %s not Ready: %w", NodeName, err))
	}
	logf("node %s Ready (logs in %s)", NodeName, filepath.Join(state, "logs"))
	return nil
}

// nodeFailed shows the end of the node components' logs and removes the node.
func nodeFailed(state string, cause error) error {
	for _, name := range nodeComponentNames {
		if _, err := os.Stat(logPath(state, name)); err == nil {
			logf("end of %s", logPath(state, name))
			tail(logPath(state, name), 15)
		}
	}
	_ = nodeDown(state)
	return cause
}

// nodeImport imports OCI archives into containerd's k8s.io namespace (the
// one the kubelet's pods use).
func nodeImport(state, containerdBin string, archives []string) error {
	for _, archive := range archives {
		if err := ctr(state, containerdBin, "-n", "k8s.io", "images", "import", "--local", archive); err != nil {
			return fmt.Errorf("importing %s: %w", archive, err)
		}
		logf("imported %s", archive)
	}
	return nil
}

func ctr(state, containerdBin string, args ...string) error {
	full := append([]string{"--address", containerdSocket(state)}, args...)
	out, err := exec.Command(filepath.Join(containerdBin, "ctr"), full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func containerdConfig(state string) string {
	dir := nodeDir(state)
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[5]q

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[6]q

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Machines of this kind refuse to lower a process's OOM score below the
  # caller's (no CAP_SYS_RESOURCE): the kubelet asks -998 for sandboxes.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory (not /var/run/netns),
  # where down unmounts them even when it kills running pods.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %[7]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = 'runc'
        Root = %[8]q
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, filepath.Join(dir, "containerd/root"), filepath.Join(dir, "containerd/state"),
		containerdSocket(state), filepath.Join(dir, "containerd.ttrpc.sock"),
		filepath.Join(dir, "containerd/opt"), sandboxImage, filepath.Join(dir, "cni/conf"),
		filepath.Join(dir, "runc"))
}

// writeCNIConfig writes the pod network: a bridge of the node's own, a /24
// chosen from the machine key, addresses stored under the node directory, no
// masquerading (pods reach nothing beyond the machine, and need not).
// containerd reports the network ready, and the kubelet the node Ready, only
// once a configuration is there.
func writeCNIConfig(state string) error {
	sum := sha256.Sum256([]byte(state))
	subnet := fmt.Sprintf("10.%d.%d.0/24", 100+int(sum[0])%100, sum[1])
	config := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "testenv-" + machineKey(state),
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      bridgeName(state),
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": subnet}}},
				"dataDir": filepath.Join(nodeDir(state), "cni/ipam"),
			},
		}},
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(nodeDir(state), "cni/conf/10-testenv.conflist"), data, 0o600)
}

func kubeletConfiguration(state string, port, healthz int) string {
	dir := nodeDir(state)
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The API server reaches the kubelet (logs) at the node's address, which may
# not be loopback: the kubelet listens there, and answers only clients with
# a certificate from the cluster's CA (the API server presents the admin's).
address: 0.0.0.0
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s
# This machine kind mounts cgroup v1 only; kubelets since 1.35 refuse it unless told.
failCgroupV1: false
failSwapOn: false
podLogsDir: %s
volumePluginDir: %s
resolvConf: /etc/resolv.conf
# A shared build machine: the disk is often fuller than a node's defaults allow.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 2%%
  nodefs.inodesFree: 2%%
  imagefs.available: 2%%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
# Pods of deleted Jobs go at once.
shutdownGracePeriod: 0s
registerNode: true
`, port, healthz, filepath.Join(state, "pki", "ca.crt"), containerdSocket(state), cgroupName(state),
		filepath.Join(dir, "pod-logs"), filepath.Join(dir, "volume-plugins"))
}

// writeKubeletIdentity mints the kubelet's client certificate
// (system:node:<name> in system:nodes) from the cluster's CA and writes its
// kubeconfig.
func writeKubeletIdentity(state, server string) error {
	pki := filepath.Join(state, "pki")
	ca, err := loadCA(pki)
	if err != nil {
		return err
	}
	pair, err := newLeaf(ca, pkix.Name{CommonName: "system:node:" + NodeName, Organization: []string{"system:nodes"}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return err
	}
	if err := writePair(pki, "kubelet", pair); err != nil {
		return err
	}
	return writeKubeconfigAs(filepath.Join(nodeDir(state), "kubelet.kubeconfig"), server, pki, "kubelet", "system:node:"+NodeName)
}

func loadCA(pki string) (keyPair, error) {
	certPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return keyPair{}, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(pki, "ca.key"))
	if err != nil {
		return keyPair{}, err
	}
	certBlock, _ := pem.Decode(certPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if certBlock == nil || keyBlock == nil {
		return keyPair{}, errors.New("the cluster's CA is not PEM")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return keyPair{}, err
	}
	var key *ecdsa.PrivateKey
	if key, err = x509.ParseECPrivateKey(keyBlock.Bytes); err != nil {
		return keyPair{}, err
	}
	return keyPair{cert, key}, nil
}

// bindNodeRole binds the built-in system:node ClusterRole to the kubelet's
// user (kept when it exists: a node attached again).
func bindNodeRole(admin *http.Client, server string) error {
	body := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
"metadata":{"name":"testenv-node","labels":{"kubesweep.dev/testenv":"node"}},
"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:node"},
"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"system:node:%s"}]}`, NodeName)
	return createOrKeep(admin, server+"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body)
}

// The policy that gives host-network pods the API server's real address.
const apiAddressPolicy = "testenv-node-api-address"

// injectAPIAddress stands in for kube-proxy, which testenv does not run:
// in-cluster clients dial KUBERNETES_SERVICE_HOST:PORT, the kubernetes
// Service's ClusterIP, which nothing routes here. A MutatingAdmissionPolicy
// sets both to the API server's loopback address in every container of a
// host-network pod (one on this node shares the machine's loopback). Pods
// without host networking cannot reach it at all: the API server listens on
// loopback only. Waits until the API server applies the policy (a dry-run
// pod shows it).
func injectAPIAddress(admin *http.Client, server string, timeout time.Duration) error {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(server, "https://"))
	if err != nil {
		return err
	}
	policy := fmt.Sprintf(`{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingAdmissionPolicy",
"metadata":{"name":%[1]q,"labels":{"kubesweep.dev/testenv":"node"}},
"spec":{"failurePolicy":"Fail","reinvocationPolicy":"Never",
"matchConstraints":{"resourceRules":[{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods"]}]},
"matchConditions":[{"name":"host-network","expression":"has(object.spec.hostNetwork) && object.spec.hostNetwork"}],
"mutations":[{"patchType":"ApplyConfiguration","applyConfiguration":{"expression":
"Object{spec: Object.spec{containers: object.spec.containers.map(c, Object.spec.containers{name: c.name, env: [Object.spec.containers.env{name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1'}, Object.spec.containers.env{name: 'KUBERNETES_SERVICE_PORT', value: '%[2]s'}]})}}"}}]}}`,
		apiAddressPolicy, port)
	binding := fmt.Sprintf(`{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingAdmissionPolicyBinding",
"metadata":{"name":%[1]q,"labels":{"kubesweep.dev/testenv":"node"}},"spec":{"policyName":%[1]q}}`, apiAddressPolicy)
	base := server + "/apis/admissionregistration.k8s.io/v1/"
	for _, obj := range []struct{ path, body string }{{"mutatingadmissionpolicies", policy}, {"mutatingadmissionpolicybindings", binding}} {
		if err := createOrKeep(admin, base+obj.path, obj.body); err != nil {
			return err
		}
	}
	probe := `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"testenv-node-probe-","namespace":"default"},
"spec":{"hostNetwork":true,"containers":[{"name":"probe","image":"pause:testenv"}]}}`
	deadline := time.Now().Add(timeout)
	for {
		resp, err := admin.Post(server+"/api/v1/namespaces/default/pods?dryRun=All", "application/json", strings.NewReader(probe))
		if err == nil {
			var pod struct {
				Spec struct {
					Containers []struct {
						Env []struct{ Name, Value string } `json:"env"`
					} `json:"containers"`
				} `json:"spec"`
			}
			decodeErr := json.NewDecoder(resp.Body).Decode(&pod)
			resp.Body.Close()
			if decodeErr == nil && len(pod.Spec.Containers) == 1 {
				for _, e := range pod.Spec.Containers[0].Env {
					if e.Name == "KUBERNETES_SERVICE_PORT" && e.Value == port {
						return nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the API server did not apply the policy " + apiAddressPolicy + " in time")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// createOrKeep creates an object, keeping one that exists (a node attached again).
func createOrKeep(admin *http.Client, url, body string) error {
	resp, err := admin.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// nodeReady answers nil once the Node reports condition Ready=True.
func nodeReady(admin *http.Client, server string) error {
	resp, err := admin.Get(server + "/api/v1/nodes/" + NodeName)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %s: %s", NodeName, resp.Status)
	}
	var node struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  string `json:"status"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return nil
			}
			return fmt.Errorf("Ready=%s: %s", c.Status, c.Message)
		}
	}
	return errors.New("no Ready condition yet")
}

// nodeDetach removes the node and, while the control plane runs, what
// node-up made in it: the Node, its pods' policy and the kubelet's binding.
// kube-controller-manager keeps the node's controllers (inert without one).
func nodeDetach(state string) error {
	if err := nodeDown(state); err != nil {
		return err
	}
	if !alive(state, "kube-apiserver") {
		return nil
	}
	serverText, err := os.ReadFile(filepath.Join(state, "server"))
	if err != nil {
		return err
	}
	server := strings.TrimSpace(string(serverText))
	admin, err := adminHTTPClient(filepath.Join(state, "pki"))
	if err != nil {
		return err
	}
	for _, path := range []string{
		"/api/v1/nodes/" + NodeName,
		"/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings/" + apiAddressPolicy,
		"/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies/" + apiAddressPolicy,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/testenv-node",
	} {
		req, err := http.NewRequest(http.MethodDelete, server+path, nil)
		if err != nil {
			return err
		}
		resp, err := admin.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("DELETE %s: %s", path, resp.Status)
		}
	}
	logf("node %s removed", NodeName)
	return nil
}

// nodeDown removes the node: processes, containers, mounts, cgroups, bridge,
// files. Safe to call when there is no node.
func nodeDown(state string) error {
	dir := nodeDir(state)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// The kubelet first, so that it restarts nothing; then the containers
	// (their processes are in the node's cgroups), the shims, containerd.
	_ = terminateWithin(state, "kubelet", 5*time.Second)
	_ = terminateWithin(state, "kube-scheduler", 5*time.Second)
	killCgroupProcesses(state)
	killShims(state)
	_ = terminateWithin(state, "containerd", 5*time.Second)
	killShims(state)
	if err := unmountUnder(dir); err != nil {
		return err
	}
	removeCgroups(state)
	removeDeadShimSockets()
	removeCNIResults(state)
	if _, err := net.InterfaceByName(bridgeName(state)); err == nil {
		if out, err := exec.Command("ip", "link", "delete", bridgeName(state)).CombinedOutput(); err != nil {
			logf("cannot delete bridge %s: %v: %s", bridgeName(state), err, out)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, name := range nodeComponentNames {
		_ = os.Remove(pidPath(state, name))
		_ = os.Remove(launchPath(state, name))
	}
	return nil
}

// killCgroupProcesses kills every process in the node's cgroups (the
// containers and pause processes), until none is left.
func killCgroupProcesses(state string) {
	root := filepath.Join("/sys/fs/cgroup/pids", cgroupName(state))
	if _, err := os.Stat(root); err != nil {
		root = filepath.Join("/sys/fs/cgroup/memory", cgroupName(state))
	}
	for attempt := 0; attempt < 50; attempt++ {
		pids := cgroupPids(root)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf("processes left in cgroup %s", root)
}

func cgroupPids(root string) []int {
	var pids []int
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, field := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killShims kills the containerd shims serving this node's containerd: the
// ones whose command line names its socket (each node has its own).
func killShims(state string) {
	socket := containerdSocket(state)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		for _, a := range args {
			if a == socket {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// shimSocketDir is where containerd 2.x's shims put their sockets, whatever
// containerd's state directory (named by a hash of containerd's address, the
// namespace and the container).
const shimSocketDir = "/run/containerd/s"

// removeDeadShimSockets removes the sockets no shim listens on any more (a
// killed shim leaves its socket): garbage whichever node it was of.
func removeDeadShimSockets() {
	entries, err := os.ReadDir(shimSocketDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(shimSocketDir, e.Name())
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(path)
		}
	}
}

// cniResultDir is where the CNI library caches each attachment's result
// (fixed by libcni), as <network>-<container>-<interface>: pods killed by
// down were never detached, so their entries stay unless removed here.
const cniResultDir = "/var/lib/cni/results"

// removeCNIResults removes the cached results of this node's network (named
// after the machine key, so no other network's) and of its sandboxes'
// loopback attachments.
func removeCNIResults(state string) {
	entries, err := os.ReadDir(cniResultDir)
	if err != nil {
		return
	}
	prefix := "testenv-" + machineKey(state) + "-"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		_ = os.Remove(filepath.Join(cniResultDir, e.Name()))
		// The same sandbox's loopback attachment (containerd's network
		// "cni-loopback"), found by the sandbox's ID.
		if id, _, ok := strings.Cut(rest, "-"); ok {
			_ = os.Remove(filepath.Join(cniResultDir, "cni-loopback-"+id+"-lo"))
		}
	}
}

// unmountUnder detaches every mount point under dir, deepest first
// (overlay root filesystems, shm, projected service-account volumes).
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		if point == dir || strings.HasPrefix(point, dir+"/") {
			points = append(points, point)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	if len(points) > 0 {
		logf("unmounted %d mount points under %s", len(points), dir)
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// removeCgroups removes the node's cgroup trees in every hierarchy, leaves
// first (a cgroup directory goes only when empty of processes and children).
func removeCgroups(state string) {
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, cgroupName(state))
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				logf("cannot remove cgroup %s: %v", d, err)
			}
		}
	}
}
