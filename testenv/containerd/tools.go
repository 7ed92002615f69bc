//go:build tools

// Package tools pins the container runtime commands this module builds
// (containerd, its runc shim, and ctr for importing images), so that
// `go mod tidy` keeps their dependencies. Its own module: containerd resolves
// its own k8s.io versions, which must not meet the control plane's replace set.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
