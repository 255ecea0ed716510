//go:build tools

// The commands this module builds; `go mod tidy` keeps their dependencies in go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
