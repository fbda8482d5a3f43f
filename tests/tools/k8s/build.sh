#!/usr/bin/env bash
# Builds the Kubernetes binaries of the test harness, cached by version outside the repository; build logs go to
# stderr, the directory holding the binaries to stdout.
#
#   build.sh        kube-apiserver, etcd and the PodResources test server (every tier with an apiserver)
#   build.sh node   the real-node tier's: kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, the
#                   pause program of the sandbox image, and crictl (cri-tools, its own module: it pins other
#                   Kubernetes libraries than this module does)
set -euo pipefail
cd "$(dirname "$0")"
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
minor=$(echo "$k8s" | cut -d. -f2)
cache=${DANM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/danm}
export CGO_ENABLED=0 GOFLAGS=-trimpath
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

if [ "${1:-}" = node ]; then
  crictl=v1.34.0
  out=${DANM_K8S_NODE_BIN:-$cache/k8s-node-$k8s-crictl-$crictl}
  src=$(cat pause/main.go go.sum | sha256sum | cut -c1-16)
  ready() { [ -x "$out/kubelet" ] && [ -x "$out/crictl" ] && [ "$(cat "$out/src" 2>/dev/null)" = "$src" ]; }
  if ready; then echo "$out" && exit 0; fi
  # Two worktrees may ask at once: one builds, the other waits for it.
  mkdir -p "$cache"
  exec 9>"$out.lock"
  flock 9
  if ready; then echo "$out" && exit 0; fi
  tmp=$(mktemp -d "$out.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  echo "building kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl $k8s and crictl $crictl (cold build, several minutes)..." >&2
  go build -ldflags "$ldflags" -o "$tmp/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl >&2
  go build -ldflags "-s -w" -o "$tmp/pause" ./pause >&2
  GOBIN=$tmp go install -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$crictl" >&2
  echo "$src" >"$tmp/src"
  rm -rf "$out" && mv "$tmp" "$out"
  trap - EXIT
  echo "cold build of the node binaries took $(( $(date +%s) - start ))s" >&2
  echo "$out"
  exit 0
fi

out=${DANM_K8S_BIN:-$cache/k8s-$k8s-etcd-$etcd}
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
start=$(date +%s)
echo "building kube-apiserver $k8s and etcd $etcd (cold build, several minutes)..." >&2
go build -ldflags "$ldflags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
go build -ldflags "-s -w" -o "$out.tmp/podresources" ./podresources >&2
echo "$src" >"$out.tmp/podresources.src"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "cold build of kube-apiserver + etcd took $(( $(date +%s) - start ))s" >&2
echo "$out"
