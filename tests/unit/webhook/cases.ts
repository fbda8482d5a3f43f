// One denied and one allowed case per single-object rule, shared by the unit tier (in-memory apiserver, handler
// called directly) and the integration tier (real apiserver calling the webhook over TLS). Objects are built
// without names; the runners add a unique name, the namespace and their labels.
import { assertEquals } from "../../harness/assert.ts";
import type { Json } from "./harness.ts";

export interface RuleCase {
  readonly rule: string;
  readonly title: string;
  readonly kind: "DanmNet" | "ClusterNetwork" | "TenantNetwork" | "TenantConfig";
  /** spec for networks; the top-level fields for TenantConfigs. */
  readonly body: Json;
  /** A refusal whose message matches, or the stored object passing `check`. */
  readonly expect: { readonly denied: RegExp } | { readonly allowed: (stored: Json) => void };
  /** The apiserver prunes unknown fields of CRs before admission: such cases run in the unit tier only. */
  readonly unitOnly?: boolean;
}

const spec = (s: Json): Json => ({ spec: s });
const ok = () => {};
const options = (o: Json) => (o.spec as Json).Options as Json;

/** Networks: everything but the TenantNetwork automation (scenarios of its own). */
export const networkCases: ReadonlyArray<RuleCase> = [
  {
    rule: "strict-decoding",
    title: "an unknown field is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", foo: 1 } }),
    expect: { denied: /spec\.Options\.foo: unknown field/ },
    unitOnly: true,
  },
  {
    rule: "strict-decoding",
    title: "DANM v3's spec.Validation is refused with a hint",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Validation: "True" }),
    expect: { denied: /spec\.Validation: DANM v3 field, no longer supported/ },
    unitOnly: true,
  },
  {
    rule: "default-network-type",
    title: "NetworkType defaults to ipvlan",
    kind: "DanmNet",
    body: spec({ NetworkID: "n" }),
    expect: { allowed: (o) => assertEquals((o.spec as Json).NetworkType, "ipvlan") },
  },
  {
    rule: "default-network-type",
    title: "an explicit NetworkType is kept",
    kind: "DanmNet",
    body: spec({ NetworkID: "flannel", NetworkType: "flannel" }),
    expect: { allowed: (o) => assertEquals((o.spec as Json).NetworkType, "flannel") },
  },
  {
    rule: "default-pools",
    title: "pools default to cidr+1…broadcast−1 and to all of net6",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.2.0.0/24", net6: "2001:db8:1::/64" } }),
    expect: {
      allowed: (o) => {
        assertEquals(options(o).allocation_pool, { start: "10.2.0.1", end: "10.2.0.254" });
        assertEquals(options(o).allocation_pool_v6, {
          cidr: "2001:db8:1::/64",
          start: "2001:db8:1::1",
          end: "2001:db8:1:0:ffff:ffff:ffff:fffe",
        });
      },
    },
  },
  {
    rule: "any-size",
    title: "an IPv4 /8 and an IPv6 /48 are accepted (no /9 or 8M limit)",
    kind: "ClusterNetwork",
    body: spec({ NetworkID: "big", Options: { cidr: "10.0.0.0/8", net6: "2001:db8::/48" } }),
    expect: {
      allowed: (o) => {
        assertEquals(options(o).allocation_pool, { start: "10.0.0.1", end: "10.255.255.254" });
        assertEquals((options(o).allocation_pool_v6 as Json).cidr, "2001:db8::/48");
      },
    },
  },
  {
    rule: "no-manual-allocation",
    title: "alloc is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", alloc: "gAA=" } }),
    expect: {
      denied: /spec\.Options\.alloc: allocation state cannot be set: danm's IPAM keeps reservations in IPBlock/,
    },
  },
  {
    rule: "no-manual-allocation",
    title: "alloc6 is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { net6: "2001:db8::/64", alloc6: "gAA=" } }),
    expect: { denied: /spec\.Options\.alloc6: allocation state cannot be set/ },
  },
  {
    rule: "routes-need-cidr",
    title: "routes on an L2 network are refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { routes: { "10.9.0.0/16": "10.1.0.1" } } }),
    expect: { denied: /spec\.Options\.routes: IP routes cannot be defined for an L2 network: set spec\.Options\.cidr/ },
  },
  {
    rule: "route-gateway",
    title: "a gateway outside cidr is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", routes: { "10.9.0.0/16": "10.2.0.1" } } }),
    expect: {
      denied: /spec\.Options\.routes\["10\.9\.0\.0\/16"\]: gateway 10\.2\.0\.1 is not inside cidr 10\.1\.0\.0\/24/,
    },
  },
  {
    rule: "route-gateway",
    title: "a gateway inside cidr is accepted",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", routes: { "10.9.0.0/16": "10.1.0.1" } } }),
    expect: { allowed: ok },
  },
  {
    rule: "route-destination",
    title: "a destination that is no CIDR is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", routes: { "10.9.0.0": "10.1.0.1" } } }),
    expect: { denied: /spec\.Options\.routes\["10\.9\.0\.0"\]: destination "10\.9\.0\.0" is not an IPv4 CIDR/ },
  },
  {
    rule: "routes6-need-net6",
    title: "routes6 without net6 are refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", routes6: { "2001:db9::/64": "2001:db8::1" } } }),
    expect: {
      denied: /spec\.Options\.routes6: IP routes cannot be defined for an L2 network: set spec\.Options\.net6/,
    },
  },
  {
    rule: "route-gateway",
    title: "an IPv6 gateway inside net6 is accepted",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { net6: "2001:db8::/64", routes6: { "2001:db9::/64": "2001:db8::1" } } }),
    expect: { allowed: ok },
  },
  {
    rule: "allocation_pool-needs-cidr",
    title: "a pool without cidr is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { allocation_pool: { start: "10.1.0.10" } } }),
    expect: { denied: /spec\.Options\.allocation_pool\.start: an allocation pool needs spec\.Options\.cidr/ },
  },
  {
    rule: "allocation_pool-inside-cidr",
    title: "a pool start outside cidr is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.1.10" } } }),
    expect: {
      denied: /spec\.Options\.allocation_pool\.start: "10\.1\.1\.10" is not an IPv4 address inside 10\.1\.0\.0\/24/,
    },
  },
  {
    rule: "pool-end-after-start",
    title: "a pool ending before its start is refused",
    kind: "DanmNet",
    body: spec({
      NetworkID: "n",
      Options: { cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.20", end: "10.1.0.10" } },
    }),
    expect: { denied: /spec\.Options\.allocation_pool\.end: must be greater than start 10\.1\.0\.20/ },
  },
  {
    rule: "pool-end-after-start",
    title: "a one-address pool is refused (end must be greater than start)",
    kind: "DanmNet",
    body: spec({
      NetworkID: "n",
      Options: { cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.20", end: "10.1.0.20" } },
    }),
    expect: { denied: /spec\.Options\.allocation_pool\.end: must be greater than start 10\.1\.0\.20/ },
  },
  {
    rule: "pool-end-after-start",
    title: "an explicit pool with end > start is kept",
    kind: "DanmNet",
    body: spec({
      NetworkID: "n",
      Options: { cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.20", end: "10.1.0.21" } },
    }),
    expect: { allowed: (o) => assertEquals(options(o).allocation_pool, { start: "10.1.0.20", end: "10.1.0.21" }) },
  },
  {
    rule: "allocation_pool_v6-needs-net6",
    title: "pool6 without net6 is refused even with cidr (DANM's guide said cidr)",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { cidr: "10.1.0.0/24", allocation_pool_v6: { cidr: "2001:db8::/120" } } }),
    expect: { denied: /spec\.Options\.allocation_pool_v6\.cidr: an allocation pool needs spec\.Options\.net6/ },
  },
  {
    rule: "allocation_pool_v6-inside-net6",
    title: "a pool6 cidr outside net6 is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { net6: "2001:db8::/64", allocation_pool_v6: { cidr: "2001:db9::/120" } } }),
    expect: { denied: /spec\.Options\.allocation_pool_v6\.cidr: 2001:db9::\/120 is not inside net6 2001:db8::\/64/ },
  },
  {
    rule: "allocation_pool_v6-inside-net6",
    title: "a pool6 cidr inside net6, without cidr, is accepted and its start/end defaulted",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { net6: "2001:db8::/64", allocation_pool_v6: { cidr: "2001:db8::/120" } } }),
    expect: {
      allowed: (o) =>
        assertEquals(options(o).allocation_pool_v6, {
          cidr: "2001:db8::/120",
          start: "2001:db8::1",
          end: "2001:db8::fe",
        }),
    },
  },
  {
    rule: "vlan-xor-vxlan",
    title: "vlan and vxlan together are refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { host_device: "ens4", vlan: 5, vxlan: 6 } }),
    expect: { denied: /spec\.Options\.vxlan: vlan and vxlan are mutually exclusive/ },
  },
  {
    rule: "vlan-xor-vxlan",
    title: "vxlan alone is accepted, up to 16777215",
    kind: "ClusterNetwork",
    body: spec({ NetworkID: "n", Options: { host_device: "ens4", vxlan: 16777215 } }),
    expect: { allowed: (o) => assertEquals(options(o).vxlan, 16777215) },
  },
  {
    rule: "network-id-required",
    title: "a missing NetworkID is refused",
    kind: "DanmNet",
    body: spec({ Options: { cidr: "10.1.0.0/24" } }),
    expect: { denied: /spec\.NetworkID: must be set/ },
  },
  {
    rule: "network-id-length",
    title: "an 11-character NetworkID with ipvlan and vlan is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "abcdefghijk", Options: { host_device: "ens4", vlan: 10 } }),
    expect: { denied: /spec\.NetworkID: "abcdefghijk" is longer than 10 characters/ },
  },
  {
    rule: "network-id-length",
    title: "the same NetworkID with flannel is accepted",
    kind: "DanmNet",
    body: spec({ NetworkID: "abcdefghijk", NetworkType: "flannel", Options: { host_device: "ens4", vlan: 10 } }),
    expect: { allowed: ok },
  },
  {
    rule: "allowed-tenants-cluster-only",
    title: "AllowedTenants on a DanmNet is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", AllowedTenants: ["default"] }),
    expect: { denied: /spec\.AllowedTenants: only valid for the ClusterNetwork API/ },
  },
  {
    rule: "allowed-tenants-cluster-only",
    title: "AllowedTenants on a ClusterNetwork is accepted",
    kind: "ClusterNetwork",
    body: spec({ NetworkID: "n", AllowedTenants: ["default", "kube-public"] }),
    expect: { allowed: (o) => assertEquals((o.spec as Json).AllowedTenants, ["default", "kube-public"]) },
  },
  {
    rule: "sriov-device-pool",
    title: "sriov without device_pool is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", NetworkType: "sriov" }),
    expect: { denied: /spec\.Options\.device_pool: is required for NetworkType sriov/ },
  },
  {
    rule: "sriov-device-pool",
    title: "sriov with host_device is refused",
    kind: "DanmNet",
    body: spec({
      NetworkID: "n",
      NetworkType: "sriov",
      Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", host_device: "ens1f0" },
    }),
    expect: { denied: /spec\.Options\.host_device: must not be set for NetworkType sriov/ },
  },
  {
    rule: "device-exclusive",
    title: "ipvlan with host_device and device_pool is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", host_device: "ens1f0" } }),
    expect: { denied: /spec\.Options\.device_pool: host_device and device_pool are mutually exclusive/ },
  },
  {
    rule: "sriov-device-pool",
    title: "sriov with a device_pool is accepted",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", NetworkType: "sriov", Options: { device_pool: "nokia.k8s.io/sriov_ens1f0" } }),
    expect: { allowed: ok },
  },
  {
    rule: "mtu-ipv6",
    title: "an MTU below 1280 on an IPv6 network is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { net6: "2001:db8::/64", mtu: 1000 } }),
    expect: { denied: /spec\.Options\.mtu: 1000 is below 1280, the minimum MTU of IPv6/ },
  },
  {
    rule: "container-prefix",
    title: "a container_prefix too long for any interface name is refused",
    kind: "DanmNet",
    body: spec({ NetworkID: "n", Options: { container_prefix: "averyveryverylongprefix" } }),
    expect: { denied: /spec\.Options\.container_prefix: "averyveryverylongprefix" is 23 bytes long/ },
  },
];

export const tenantConfigCases: ReadonlyArray<RuleCase> = [
  {
    rule: "vni-type-with-range",
    title: "0_wrong_tconf: vniType without vniRange is refused",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "vlan" }], networkIds: { flannel: "flannel" } },
    expect: {
      denied: /hostDevices\[0\]\.vniRange: vniType and vniRange must be given together \(vniRange is missing\)/,
    },
  },
  {
    rule: "tenantconfig-not-empty",
    title: "an empty TenantConfig is refused",
    kind: "TenantConfig",
    body: {},
    expect: { denied: /hostDevices: hostDevices, networkIds or allowedClusterNetworks must be given/ },
  },
  {
    rule: "vni-type",
    title: "an unknown vniType is refused",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "geneve", vniRange: "10-20" }] },
    expect: { denied: /hostDevices\[0\]\.vniType: "geneve" is neither vlan nor vxlan/ },
  },
  {
    rule: "vni-range-syntax",
    title: "a malformed vniRange is refused",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "10-x" }] },
    expect: {
      denied: /hostDevices\[0\]\.vniRange: not a list of IDs and ranges: "10-x" is not a number or a range a-b/,
    },
  },
  {
    rule: "vni-range-limits",
    title: "VLAN IDs above 4094 are refused",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "4000-4095" }] },
    expect: { denied: /hostDevices\[0\]\.vniRange: vlan IDs must be between 1 and 4094, got 4095/ },
  },
  {
    rule: "vni-range-limits",
    title: "VXLAN IDs beyond DANM's 5000 are accepted, up to 16777215",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "vxlan", vniRange: "4990-5010,16777000-16777215" }] },
    expect: { allowed: ok },
  },
  {
    rule: "no-manual-allocation",
    title: "alloc is refused",
    kind: "TenantConfig",
    body: { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "10-20", alloc: "gAA=" }] },
    expect: { denied: /hostDevices\[0\]\.alloc: allocation state cannot be set/ },
  },
  {
    rule: "vni-range-overlap",
    title: "overlapping ranges of one device and type are refused",
    kind: "TenantConfig",
    body: {
      hostDevices: [
        { name: "ens4", vniType: "vlan", vniRange: "1000-2000" },
        { name: "ens4", vniType: "vlan", vniRange: "1500-1600,2500" },
      ],
    },
    expect: { denied: /hostDevices\[1\]\.vniRange: overlaps hostDevices\[0\] \(ens4, vlan\) at 1500/ },
  },
  {
    rule: "vni-range-overlap",
    title: "1_good_tconf: ranges of different devices may overlap",
    kind: "TenantConfig",
    body: {
      hostDevices: [
        { name: "ens4", vniType: "vlan", vniRange: "1000-2000" },
        { name: "ens5", vniType: "vlan", vniRange: "2000-3000" },
      ],
      networkIds: { flannel: "flannel" },
    },
    expect: { allowed: ok },
  },
  {
    rule: "network-ids",
    title: "an empty NetworkID in networkIds is refused",
    kind: "TenantConfig",
    body: { networkIds: { flannel: "" } },
    expect: { denied: /networkIds\["flannel"\]: the NetworkID must not be empty/ },
  },
  {
    rule: "network-id-length",
    title: "a NetworkID longer than 10 for a dynamic type is refused",
    kind: "TenantConfig",
    body: { networkIds: { ipvlan: "abcdefghijk" } },
    expect: { denied: /networkIds\["ipvlan"\]: "abcdefghijk" is longer than 10 characters/ },
  },
];
