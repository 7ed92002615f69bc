//go:build tools

// Package tools pins the node's Kubernetes commands (kubelet and
// kube-scheduler) so that `go mod tidy` keeps their dependencies. A separate
// module from the control plane's (../go.mod): the control plane's cache key
// is that module's digest, and the node is built only when asked for.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
