#!/bin/sh
# Installs danm's CNI plugins (`danm`, `fakeipam`) and 00-danm.conflist on the node: the node DaemonSet's init container
# (k8s/netwatcher/daemonset.yaml). The work is cmd/install_cni.ts's (atomic writes, the configuration last); this
# script only decides what it installs from:
#
#   compiled  the image has $IMAGE/dist/danm and $IMAGE/dist/fakeipam (`deno task images --compiled`):
#             they are copied, nothing else lands on the host.
#   launcher  otherwise the plugins run from source, so the host needs Deno and the sources: they are staged under
#             $DANM_STAGE_DIR/releases/<release>, a directory the container sees at its host path, and
#             cmd/install_cni.ts runs from there, so the launchers it writes name host paths. The stage of the
#             previous release is kept (a plugin may still be starting from it); older ones are removed.
#
# Extra arguments go to cmd/install_cni.ts (--daemon-socket PATH, --naming-scheme legacy, --name NAME …).
set -eu

IMAGE=${DANM_IMAGE_ROOT:-/opt/danm}
BIN_DIR=${DANM_CNI_BIN_DIR:-/host/opt/cni/bin}
CONF_DIR=${DANM_CNI_CONF_DIR:-/host/etc/cni/net.d}
STAGE=${DANM_STAGE_DIR:-/var/lib/danm}
DENO=${DANM_DENO:-$(command -v deno || true)}
[ -n "$DENO" ] || {
  echo "install-cni: no deno on PATH" >&2
  exit 1
}

install_cni() { # <deno> <repo> <args…>
  deno=$1 repo=$2
  shift 2
  "$deno" run --cached-only --no-prompt --allow-read --allow-env --allow-write="$BIN_DIR,$CONF_DIR" \
    "$repo/cmd/install_cni.ts" --bin-dir "$BIN_DIR" --conf-dir "$CONF_DIR" "$@"
}

if [ -x "$IMAGE/dist/danm" ] && [ -x "$IMAGE/dist/fakeipam" ]; then
  install_cni "$DENO" "$IMAGE" --from "$IMAGE/dist" --no-launcher "$@"
  exit 0
fi

release=$(cat "$IMAGE/RELEASE")
case $release in
  "" | *[!A-Za-z0-9._-]*)
    echo "install-cni: $IMAGE/RELEASE holds no release name: \"$release\"" >&2
    exit 1
    ;;
esac
dir=$STAGE/releases/$release
if [ ! -e "$dir/.complete" ]; then
  rm -rf "$dir.partial" "$dir"
  mkdir -p "$dir.partial/bin"
  cp -R "$IMAGE/." "$dir.partial/"
  cp "$DENO" "$dir.partial/bin/deno"
  chmod 0755 "$dir.partial/bin/deno"
  : >"$dir.partial/.complete"
  mv "$dir.partial" "$dir"
  echo "staged release $release in $dir"
fi
# The launchers install_cni.ts writes take Deno, the sources and DENO_DIR from this run: all under $dir.
export DENO_DIR="$dir/.deno"
install_cni "$dir/bin/deno" "$dir" "$@"

previous=$(cat "$STAGE/current" 2>/dev/null || true)
printf '%s\n' "$release" >"$STAGE/current.partial"
mv "$STAGE/current.partial" "$STAGE/current"
for old in "$STAGE"/releases/*; do
  [ -e "$old" ] || continue
  name=${old##*/}
  if [ "$name" != "$release" ] && [ "$name" != "$previous" ]; then
    rm -rf "$old"
    echo "removed release $name"
  fi
done
