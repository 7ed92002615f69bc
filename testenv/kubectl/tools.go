//go:build tools

// Package tools pins the kubectl command this module builds, so that
// `go mod tidy` keeps its dependencies. A separate module from the control
// plane's (../go.mod): the control plane's cache key is that module's go.sum
// digest, which a kubectl-only dependency must not change.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubectl"
)
