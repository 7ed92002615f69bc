//go:build tools

// Package tools pins the helm command this module builds, so that
// `go mod tidy` keeps its dependencies. This is a separate module from the
// control plane's (../go.mod) on purpose: helm resolves its own k8s.io
// versions and must not be forced onto the control plane's replace set.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
