#!/usr/bin/env bash
# Regenerates the tools module that builds the control plane, etcd and the node binaries from the Go module proxy.
# Run only when bumping K8S_VERSION; commit go.mod and go.sum afterwards.
# k8s.io/kubernetes pins its staging modules at v0.0.0 with local replaces, which only apply
# in the main module, so this wrapper replaces each with its published v0.<minor>.<patch> tag.
set -euo pipefail
K8S=${K8S_VERSION:-v1.34.4}
STAGING=v0.${K8S#v1.}
cd "$(dirname "$0")"
rm -f go.mod go.sum
go mod init danm.invalid/tests/tools/k8s
upstream=$(go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$upstream"); do
  go mod edit -replace="$m=$m@$STAGING"
done
godebug=$(sed -n 's/^godebug[[:space:]]\+default=\(go[0-9.]*\).*/\1/p' "$upstream")
if [ -n "$godebug" ]; then go mod edit -godebug=default="$godebug"; fi
for cmd in kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl; do
  go get -tool "k8s.io/kubernetes/cmd/$cmd@$K8S"
done
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)
go get -tool "go.etcd.io/etcd/server/v3@$etcd"
go mod tidy
