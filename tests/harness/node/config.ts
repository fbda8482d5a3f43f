// The configuration files of a real node's processes (containerd, kubelet, kube-proxy) and of the primary CNI, as a
// node's installer would write them. Paths are the node's own (inside its mount namespace: /var/lib/kubelet,
// /run/containerd …), which the harness bind-mounts from per-node directories.

export const containerdSocket = "/run/containerd/containerd.sock";

/**
 * containerd 1.6 (Debian 12), CRI plugin. `restrict_oom_score_adj`: this machine denies negative oom_score_adj
 * writes (no CAP_SYS_RESOURCE), and without it runc fails every container ("can't get final child's PID from pipe").
 */
export function containerdConfig(pauseImage: string): string {
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "${containerdSocket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`;
}

export interface KubeletConfigInput {
  readonly caFile: string;
  /** The node's own cgroup subtree (several kubelets share this machine's cgroup hierarchies). */
  readonly cgroupRoot: string;
  readonly maxPods: number;
  /** Taints the node registers with. */
  readonly taints: ReadonlyArray<{ key: string; effect: string }>;
}

/** A KubeletConfiguration (YAML is a superset of JSON). */
export function kubeletConfig(i: KubeletConfigInput): string {
  return JSON.stringify(
    {
      apiVersion: "kubelet.config.k8s.io/v1beta1",
      kind: "KubeletConfiguration",
      containerRuntimeEndpoint: `unix://${containerdSocket}`,
      cgroupDriver: "cgroupfs",
      cgroupRoot: i.cgroupRoot,
      cgroupsPerQOS: true,
      failSwapOn: false,
      // The kubelet's own oom_score_adj: -999 by default, which this machine refuses.
      oomScoreAdj: 0,
      readOnlyPort: 0,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true },
        x509: { clientCAFile: i.caFile },
      },
      authorization: { mode: "Webhook" },
      clusterDomain: "cluster.local",
      maxPods: i.maxPods,
      serializeImagePulls: false,
      registerWithTaints: i.taints,
      // A shared, busy test machine: neither evictions nor image garbage collection may interfere.
      evictionHard: {
        "memory.available": "0%",
        "nodefs.available": "0%",
        "nodefs.inodesFree": "0%",
        "imagefs.available": "0%",
      },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      nodeStatusReportFrequency: "10s",
      shutdownGracePeriod: "0s",
    },
    null,
    2,
  );
}

export function kubeProxyConfig(kubeconfig: string, nodeName: string): string {
  return JSON.stringify(
    {
      apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
      kind: "KubeProxyConfiguration",
      mode: "nftables",
      clientConnection: { kubeconfig },
      hostnameOverride: nodeName,
      healthzBindAddress: "127.0.0.1:10256",
      metricsBindAddress: "127.0.0.1:10249",
      // Global conntrack sysctls are the machine's, not a node's: leave them.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
    },
    null,
    2,
  );
}

/**
 * The cluster's primary CNI on one node: a bridge with a per-node subnet (host-local), routed between nodes by the
 * harness as a host-gw overlay would. danm's `default` networks name it (NetworkID = the file name).
 */
export function primaryCniConfig(name: string, subnet: string): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name,
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    ipMasq: false,
    hairpinMode: true,
    ipam: { type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }] },
  });
}
