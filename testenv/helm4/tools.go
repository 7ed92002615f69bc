//go:build tools

// Package tools pins the Helm 4 command this module builds, so that
// `go mod tidy` keeps its dependencies. A module of its own, like ../helm:
// Helm 4 resolves its own k8s.io versions, and the tests drive it beside
// Helm 3 (both write `helm.sh/release.v1` records, in different shapes).
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
