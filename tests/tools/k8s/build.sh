#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the test harness, cached by version outside the repository.
# Prints the directory holding both binaries on stdout; build logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")"
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
minor=$(echo "$k8s" | cut -d. -f2)
out=${DANM_K8S_BIN:-${DANM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/danm}/k8s-$k8s-etcd-$etcd}
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then echo "$out"; exit 0; fi
mkdir -p "$out.tmp"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
export CGO_ENABLED=0 GOFLAGS=-trimpath
start=$(date +%s)
echo "building kube-apiserver $k8s and etcd $etcd (cold build, several minutes)..." >&2
go build -ldflags "$ldflags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "cold build of kube-apiserver + etcd took $(( $(date +%s) - start ))s" >&2
echo "$out"
