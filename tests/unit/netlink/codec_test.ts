// The netlink codec without a kernel: addresses as text, attribute framing, message codecs, error mapping.
import { Effect } from "effect";
import { NetlinkExists, NetlinkFailure, NetlinkInvalid, NetlinkUnsupported } from "../../../core/ports/netlink.ts";
import {
  decodeAddr,
  decodeLink,
  decodeRoute,
  encodeAddr,
  encodeRoute,
  ifinfomsg,
  IFLA,
  IFLA_INFO,
  writeLinkAttrs,
  writeLinkInfo,
} from "../../../adapters/netlink/codec.ts";
import { attempt, Errno, KernelError, toNetlinkError } from "../../../adapters/netlink/errors.ts";
import { canonicalIp, formatMac, parseIp, parsePrefix } from "../../../adapters/netlink/ip.ts";
import { arpAnnouncement } from "../../../adapters/netlink/live.ts";
import { endOfReply } from "../../../adapters/netlink/socket.ts";
import { Attrs, decodeMessages, encodeMessage, NLMSG_ERROR, Writer } from "../../../adapters/netlink/wire.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

Deno.test("ip: canonical text as iproute2 prints it (RFC 5952)", () => {
  const cases: [string, string][] = [
    ["10.1.0.5", "10.1.0.5"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::", "fe80::"],
    ["::ffff:10.0.0.1", "::ffff:10.0.0.1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
  ];
  for (const [input, want] of cases) assertEquals(canonicalIp(input), want, input);
  for (const bad of ["", "1.2.3", "1.2.3.256", "010.0.0.1", "1:::2", ":1", "1:2:3:4:5:6:7:8:9", "g::1", "1::2::3"]) {
    assertEquals(parseIp(bad), undefined, bad);
  }
  assertEquals(parsePrefix("10.0.0.0/8")?.prefix, 8);
  assertEquals(parsePrefix("2001:db8::/129"), undefined);
  assertEquals(parsePrefix("10.0.0.1")?.prefix, 32);
  assertEquals(parsePrefix("10.0.0.0/x"), undefined);
});

Deno.test("wire: nested attributes are aligned, flagged and parsed back", () => {
  const w = new Writer().u32(7).attrStr(3, "abc").attrU32(4, 1500).nest(18, (w) => {
    w.attrStr(1, "vxlan");
    w.nest(2, (w) => w.attrBe16(15, 4789).attrU8(7, 0));
  });
  const buf = w.finish();
  assertEquals(buf.length % 4, 0);
  const dv = new DataView(buf.buffer);
  assertEquals(dv.getUint16(4, true), 8); // "abc\0" + header
  assertEquals(dv.getUint16(20 + 2, true), 18 | 0x8000, "nested flag");
  const a = Attrs.parse(buf, 4);
  assertEquals([a.str(3), a.u32(4)], ["abc", 1500]);
  const info = a.nested(18)!;
  assertEquals(info.str(1), "vxlan");
  assertEquals([info.nested(2)!.be16(15), info.nested(2)!.u8(7)], [4789, 0]);
  assertEquals(a.u32(99), undefined);
});

Deno.test("wire: datagrams split into messages; a bad length is an error", () => {
  const m1 = encodeMessage(16, 2, 5, Uint8Array.of(1, 2, 3)), m2 = encodeMessage(3, 2, 5, new Uint8Array(4));
  const datagram = new Uint8Array(20 + m2.length);
  datagram.set(m1);
  datagram.set(m2, 20); // m1 is 19 bytes, padded to 20
  const ms = decodeMessages(datagram);
  assertEquals(ms.map((m) => [m.type, m.flags, m.seq, m.payload.length]), [[16, 2, 5, 3], [3, 2, 5, 4]]);
  const broken = m1.slice();
  new DataView(broken.buffer).setUint32(0, 400, true);
  let threw = false;
  try {
    decodeMessages(broken);
  } catch {
    threw = true;
  }
  assert(threw, "oversized length accepted");
});

Deno.test("codec: a created link (veth with peer attributes) decodes as the kernel would report it", () => {
  const w = ifinfomsg(new Writer(), 0, 1, 1);
  writeLinkAttrs(w, { name: "host0", mtu: 1450, mac: Uint8Array.of(2, 0, 0, 0, 0, 1) });
  writeLinkInfo(w, { kind: "veth", peer: { name: "eth0", netnsFd: 9 } });
  const body = w.finish();
  const a = Attrs.parse(body, 16);
  assertEquals([a.str(IFLA.IFNAME), a.u32(IFLA.MTU), formatMac(a.raw(IFLA.ADDRESS)!)], [
    "host0",
    1450,
    "02:00:00:00:00:01",
  ]);
  const peer = a.nested(IFLA.LINKINFO)!.nested(IFLA_INFO.DATA)!.raw(1)!;
  const peerAttrs = Attrs.parse(peer, 16); // the peer carries its own ifinfomsg
  assertEquals([peerAttrs.str(IFLA.IFNAME), peerAttrs.u32(IFLA.NET_NS_FD)], ["eth0", 9]);

  // A kernel-style NEWLINK reply for a vxlan.
  const r = ifinfomsg(new Writer(), 12, 0x10043, 0);
  writeLinkAttrs(r, { name: "vx0", mtu: 1450, mac: Uint8Array.of(2, 0, 0, 0, 0, 2) });
  r.attrU8(IFLA.OPERSTATE, 6).attrU32(IFLA.MASTER, 3).attrStr(IFLA.IFALIAS, "overlay");
  writeLinkInfo(r, {
    kind: "vxlan",
    vni: 42,
    port: 4789,
    remote: Uint8Array.of(10, 0, 0, 2),
    local: Uint8Array.of(10, 0, 0, 1),
    learning: false,
    l2miss: true,
    l3miss: false,
    dev: 2,
    ttl: 8,
  });
  assertEquals(decodeLink(r.finish()), {
    index: 12,
    name: "vx0",
    kind: "vxlan",
    mtu: 1450,
    mac: "02:00:00:00:00:02",
    up: true,
    lowerUp: true,
    operstate: "up",
    master: 3,
    alias: "overlay",
    vxlan: {
      vni: 42,
      port: 4789,
      remote: "10.0.0.2",
      local: "10.0.0.1",
      learning: false,
      l2miss: true,
      l3miss: false,
      dev: 2,
      ttl: 8,
    },
  });
});

Deno.test("codec: wide flags and tables go in attributes; addresses and routes round-trip", () => {
  const addr = encodeAddr({
    family: 6,
    prefix: 64,
    flags: 0x02 | 0x200,
    scope: 0,
    index: 4,
    local: parseIp("2001:db8::5")!.bytes,
  });
  assertEquals(addr[2], 0x02, "low flag byte in the header");
  assertEquals(decodeAddr(addr)?.flags, ["nodad", "noprefixroute"]);
  assertEquals(decodeAddr(addr)?.cidr, "2001:db8::5/64");
  const route = encodeRoute({
    family: 4,
    dst: Uint8Array.of(10, 9, 0, 0),
    dstLen: 16,
    table: 1000,
    protocol: 3,
    scope: 0,
    type: 1,
    onlink: false,
    gateway: Uint8Array.of(10, 1, 0, 1),
    oif: 2,
  });
  assertEquals(route[4], 0, "rtm_table is RT_TABLE_UNSPEC beyond 255");
  assertEquals(decodeRoute(route), {
    family: 4,
    dst: "10.9.0.0/16",
    table: 1000,
    scope: "universe",
    type: "unicast",
    protocol: "boot",
    gateway: "10.1.0.1",
    link: 2,
  });
});

Deno.test("gratuitous ARP frame: broadcast request with sender = target = the announced address", () => {
  const f = arpAnnouncement(Uint8Array.of(2, 0, 0, 0, 0, 9), Uint8Array.of(10, 0, 0, 5));
  assertEquals(f.length, 42);
  assertEquals([...f.subarray(0, 6)], [255, 255, 255, 255, 255, 255]);
  assertEquals([f[12], f[13], f[20], f[21]], [0x08, 0x06, 0, 1]);
  assertEquals([...f.subarray(28, 32)], [10, 0, 0, 5]);
  assertEquals([...f.subarray(38, 42)], [10, 0, 0, 5]);
  assertEquals([...f.subarray(32, 38)], [0, 0, 0, 0, 0, 0]);
});

Deno.test("errors: errno classes and messages naming operation and object", async () => {
  const e = toNetlinkError(new KernelError(Errno.EEXIST), "create link", "vx_foo (vxlan)");
  assert(e instanceof NetlinkExists);
  assertEquals(e.message, "create link vx_foo (vxlan): exists");
  const kinds = [
    [Errno.ENODEV, "NetlinkNotFound"],
    [Errno.ENOENT, "NetlinkNotFound"],
    [Errno.ESRCH, "NetlinkNotFound"],
    [Errno.EADDRNOTAVAIL, "NetlinkNotFound"],
    [Errno.EPERM, "NetlinkPermission"],
    [Errno.EACCES, "NetlinkPermission"],
    [Errno.EOPNOTSUPP, "NetlinkUnsupported"],
    [Errno.EBUSY, "NetlinkBusy"],
    [Errno.EINVAL, "NetlinkInvalid"],
    [Errno.ERANGE, "NetlinkInvalid"],
    [Errno.ENETUNREACH, "NetlinkFailure"],
  ] as const;
  for (const [errno, tag] of kinds) assertEquals(toNetlinkError(new KernelError(errno), "op", "x")._tag, tag);
  const unknownKind = toNetlinkError(new KernelError(Errno.EINVAL, "Unknown device type"), "create link", "x", true);
  assert(unknownKind instanceof NetlinkUnsupported);
  assert(
    toNetlinkError(new KernelError(Errno.EINVAL, "Unknown device type"), "set link", "x") instanceof NetlinkInvalid,
  );
  const other = toNetlinkError(
    new KernelError(Errno.ENETUNREACH, "Nexthop has invalid gateway"),
    "add route",
    "default",
  );
  assert(other instanceof NetlinkFailure);
  assertEquals(other.message, "add route default: ENETUNREACH (Nexthop has invalid gateway)");
  // attempt(): kernel errors are typed failures, anything else is a defect.
  const failed = await Effect.runPromise(Effect.flip(attempt("get link", "eth9", () => {
    throw new KernelError(Errno.ENODEV);
  })));
  assertEquals(failed.message, "get link eth9: not found");
  const exit = await Effect.runPromiseExit(attempt("get link", "eth9", () => {
    throw new TypeError("bug");
  }));
  assert(exit._tag === "Failure" && String(exit.cause).includes("bug"), "defect kept");
});

// Found by `deno task fuzz` (netlink-replies): malformed kernel replies threw RangeErrors and plain Errors, which the
// live layer treats as defects; they are KernelErrors (EBADMSG), i.e. typed NetlinkErrors at the port.
Deno.test("codec: malformed replies are KernelErrors (EBADMSG), never other exceptions", () => {
  const kernelError = (f: () => unknown, re: RegExp) => {
    try {
      f();
    } catch (e) {
      assert(e instanceof KernelError, `expected a KernelError, got ${e}`);
      assertEquals(e.errno, Errno.EBADMSG);
      assert(re.test(e.message), e.message);
      return;
    }
    throw new Error(`no error for ${re}`);
  };
  kernelError(() => decodeLink(new Uint8Array(10)), /RTM_NEWLINK of 10 bytes, shorter than its 16-byte header/);
  kernelError(() => decodeAddr(new Uint8Array(3)), /RTM_NEWADDR/);
  kernelError(() => decodeRoute(new Uint8Array(0)), /RTM_NEWROUTE/);
  // An IFA_LOCAL of 5 bytes is no address (formatIp read past it and printed garbage).
  const addr = encodeAddr({
    family: 4,
    prefix: 24,
    flags: 0,
    scope: 0,
    index: 3,
    local: Uint8Array.of(10, 0, 0, 5, 1),
  });
  kernelError(() => decodeAddr(addr), /IFA_LOCAL: an address of 5 bytes/);
  // A length field running past the datagram.
  const msg = encodeMessage(16, 0, 1, new Uint8Array(16));
  new DataView(msg.buffer).setUint32(0, 999, true);
  kernelError(() => decodeMessages(msg), /malformed netlink message at byte 0: length 999/);
  // An NLMSG_ERROR too short to hold its error code.
  kernelError(
    () => endOfReply({ type: NLMSG_ERROR, flags: 0, seq: 1, payload: new Uint8Array(2) }),
    /without an error code/,
  );
  assertEquals(endOfReply({ type: NLMSG_ERROR, flags: 0, seq: 1, payload: new Uint8Array(4) }), "end");
});
