// The pure planning rules of the danm CNI (danm-spec §4.4–§4.7) and delegate configuration handling.
import { Effect } from "effect";
import { parseDelegateConfig, withCniArgs, withIpam } from "../../../core/cni/attach/delegate.ts";
import { broadcastOf } from "../../../core/cni/attach/configure.ts";
import { requestedMac } from "../../../core/cni/backends/macvlan/create.ts";
import { CniError, parseCniArgs } from "../../../core/cni/protocol.ts";
import { backendOf } from "../../../core/cni/backends/kinds.ts";
import { fakeIpamSection, ruleSource } from "../../../core/cni/addresses.ts";
import { parentDevice } from "../../../core/cni/plan.ts";
import { staticDelegateUsesDanmIpam } from "../../../core/podnetworks/addressing.ts";
import { assertEquals, assertMatch, assertRejects } from "../../harness/assert.ts";

Deno.test("parent device: vx_<NetworkID> with vxlan, else <NetworkID>.<vlan>, else host_device", () => {
  assertEquals(parentDevice({ NetworkID: "int", Options: { host_device: "ens4", vxlan: 600, vlan: 5 } }), "vx_int");
  assertEquals(parentDevice({ NetworkID: "ext", Options: { host_device: "ens4", vlan: 300 } }), "ext.300");
  assertEquals(parentDevice({ NetworkID: "x", Options: { host_device: "ens4" } }), "ens4");
  assertEquals(parentDevice({ NetworkID: "x" }), undefined);
});

Deno.test('backend: ipvlan built in ("" too, any case), macvlan and sriov generated, anything else static', () => {
  assertEquals(backendOf({ NetworkID: "a" })._tag, "Ipvlan");
  assertEquals(backendOf({ NetworkID: "a", NetworkType: "IPVLAN" })._tag, "Ipvlan");
  assertEquals(backendOf({ NetworkID: "a", NetworkType: "macvlan", Options: { host_device: "e" } }), {
    _tag: "Macvlan",
    parent: { name: "e" },
    networkId: "a",
  });
  // A VLAN/VXLAN parent carries what it must be: the network's ID on its host_device (checked at ADD).
  assertEquals(backendOf({ NetworkID: "a", Options: { host_device: "e", vxlan: 9 } }), {
    _tag: "Ipvlan",
    parent: { name: "vx_a", identity: { kind: "vxlan", vni: 9, device: "e" } },
  });
  assertEquals(backendOf({ NetworkID: "a", NetworkType: "sriov", Options: { device_pool: "x/y", vlan: 7 } }), {
    _tag: "Sriov",
    resource: "x/y",
    vlan: 7,
    networkId: "a",
  });
  assertEquals(backendOf({ NetworkID: "flannel", NetworkType: "flannel" }), {
    _tag: "Static",
    networkId: "flannel",
    networkType: "flannel",
  });
});

Deno.test("static delegates use danm's IPAM only as DANM decided (§4.6)", () => {
  const cidr = { cidr: "10.0.0.0/24" }, net6 = { net6: "2001:db8::/64" };
  assertEquals(staticDelegateUsesDanmIpam(undefined, undefined, cidr), false, "no request: the file's IPAM");
  assertEquals(staticDelegateUsesDanmIpam("dynamic", undefined, cidr), true);
  assertEquals(staticDelegateUsesDanmIpam("dynamic", undefined, {}), false, "no cidr: the file's IPAM");
  assertEquals(staticDelegateUsesDanmIpam(undefined, "dynamic", net6), true);
  assertEquals(staticDelegateUsesDanmIpam("none", undefined, {}), true);
});

Deno.test("delegate configs: a conf or a conflist gets name and cniVersion; plugin types cannot be paths", async () => {
  const conf = await Effect.runPromise(
    parseDelegateConfig(JSON.stringify({ type: "bridge", bridge: "br0" }), "f.conf", {
      name: "net",
      cniVersion: "1.0.0",
    }),
  );
  assertEquals(conf.plugins, [{ type: "bridge", bridge: "br0", name: "net", cniVersion: "1.0.0" }]);
  const list = await Effect.runPromise(parseDelegateConfig(
    JSON.stringify({ cniVersion: "0.4.0", name: "chain", plugins: [{ type: "bridge" }, { type: "tuning" }] }),
    "f.conflist",
    { name: "net", cniVersion: "1.0.0" },
  ));
  assertEquals(list.plugins.map((p) => [p.type, p.name, p.cniVersion]), [["bridge", "chain", "0.4.0"], [
    "tuning",
    "chain",
    "0.4.0",
  ]]);
  for (const bad of [{ type: "../../bin/sh" }, { plugins: [] }, { plugins: [{ type: "/x" }] }, [1], { name: "x" }]) {
    await assertRejects(
      () => Effect.runPromise(parseDelegateConfig(JSON.stringify(bad), "nad", { name: "n", cniVersion: "1.0.0" })),
      (e) => assertMatch(String(e), /delegate configuration nad/),
    );
  }
});

Deno.test("fakeipam goes where the IPAM is (else on the first plugin); cni-args become args.cni", () => {
  const ipam = fakeIpamSection(["10.0.0.5/24", "2001:db8::5/64"]);
  assertEquals(ipam, {
    type: "fakeipam",
    ips: [{ ipcidr: "10.0.0.5/24", version: 4 }, { ipcidr: "2001:db8::5/64", version: 6 }],
  });
  const chain = {
    source: "s",
    name: "n",
    cniVersion: "1.0.0",
    plugins: [{ type: "bridge" }, { type: "x", ipam: { type: "host-local" } }],
    disableCheck: false,
    disableGC: false,
  };
  assertEquals(withIpam(chain, ipam).plugins, [{ type: "bridge" }, { type: "x", ipam }]);
  assertEquals(withIpam({ ...chain, plugins: [{ type: "a" }, { type: "b" }] }, ipam).plugins, [{ type: "a", ipam }, {
    type: "b",
  }]);
  assertEquals(withCniArgs(chain, { k: "v" }).plugins[0], { type: "bridge", args: { cni: { k: "v" } } });
});

Deno.test("built-in macvlan MAC: as the macvlan plugin took it (CNI_ARGS MAC=, overridden by cni-args mac)", async () => {
  const mac = async (cniArgs: string, podArgs?: Record<string, unknown>) => {
    const args = parseCniArgs(cniArgs);
    if (args instanceof CniError) throw new Error(`bad CNI_ARGS in the test: ${cniArgs}`);
    const r = await Effect.runPromise(Effect.result(requestedMac(args, podArgs)));
    return r._tag === "Success" ? r.success : `refused: ${r.failure.reason}`;
  };
  assertEquals(await mac("IgnoreUnknown=1;K8S_POD_NAME=p"), undefined);
  assertEquals(await mac("IgnoreUnknown=1;MAC=0A-58-0A-00-00-05"), "0a:58:0a:00:00:05");
  assertEquals(await mac("MAC=0a:58:0a:00:00:05", { mac: "02:00:00:00:00:07" }), "02:00:00:00:00:07");
  assertEquals(await mac("", { mac: 7, other: "x" }), undefined);
  assertEquals(await mac("", { mac: "02:00:00:00:00" }), 'refused: "02:00:00:00:00" is not a MAC address');
});

Deno.test("IPv4 broadcast address of a built-in macvlan's address: the subnet's last, none for /31, /32 and IPv6", () => {
  assertEquals(
    ["10.30.0.1/24", "10.30.0.5/30", "10.30.0.4/31", "10.30.0.4/32", "2001:db8::1/64", "bogus"].map(broadcastOf),
    ["10.30.0.255", "10.30.0.7", undefined, undefined, undefined, undefined],
  );
});

Deno.test("policy rule source: the interface's network", () => {
  assertEquals(ruleSource("10.0.0.5/24"), "10.0.0.0/24");
  assertEquals(ruleSource("2001:db8::5/64"), "2001:db8::/64");
  assertEquals(ruleSource("bogus"), undefined);
});
