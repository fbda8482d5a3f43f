#!/usr/bin/env bash
# Builds kube-apiserver, etcd and the PodResources test server for the test harness, cached by version outside the repository.
# Prints the directory holding both binaries on stdout; build logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")"
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
minor=$(echo "$k8s" | cut -d. -f2)
out=${DANM_K8S_BIN:-${DANM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/danm}/k8s-$k8s-etcd-$etcd}
export CGO_ENABLED=0 GOFLAGS=-trimpath
# The kubelet's PodResources gRPC server (podresources/), for danm's device lookup tests: cheap, built on its own,
# and again whenever its source changes.
src=$(cat podresources/main.go go.sum | sha256sum | cut -c1-16)
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  if [ ! -x "$out/podresources" ] || [ "$(cat "$out/podresources.src" 2>/dev/null)" != "$src" ]; then
    echo "building the PodResources test server ($k8s)..." >&2
    go build -ldflags "-s -w" -o "$out/podresources.tmp" ./podresources >&2
    mv "$out/podresources.tmp" "$out/podresources" && echo "$src" >"$out/podresources.src"
  fi
  echo "$out"
  exit 0
fi
mkdir -p "$out.tmp"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
start=$(date +%s)
echo "building kube-apiserver $k8s and etcd $etcd (cold build, several minutes)..." >&2
go build -ldflags "$ldflags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
go build -ldflags "-s -w" -o "$out.tmp/podresources" ./podresources >&2
echo "$src" >"$out.tmp/podresources.src"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "cold build of kube-apiserver + etcd took $(( $(date +%s) - start ))s" >&2
echo "$out"
