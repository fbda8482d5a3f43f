// nf_tables set-element patches over netlink (NETLINK_NETFILTER) from this process: the policy tables' peer churn
// without an nsenter + nft process per pod. One batch (NFNL_MSG_BATCH_BEGIN … END) carries every removal
// (NFT_MSG_DELSETELEM) before every addition (NFT_MSG_NEWSETELEM), so the kernel commits all of it or none.
//
// Only the concatenated interval sets' elements (`addr . proto . port[-port]`, one kernel element each with its
// start key and end key) are encoded here; anything else is refused with `NotEncodable`, and the caller patches with
// nft instead. Keys are what `nft --debug=netlink` shows for the same element: each field padded to 4 bytes,
// addresses and ports in network order.
import { cidrSpan } from "../../core/netpol/peers.ts";
import { KernelError } from "./errors.ts";
import { CLONE_NEWNET, MSG_TRUNC, O_CLOEXEC, O_RDONLY, sys } from "./libc.ts";
import { endOfReply, NetlinkSocket } from "./socket.ts";
import { decodeMessages, encodeMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, Writer } from "./wire.ts";

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 16, NFNL_MSG_BATCH_END = 17;
const NFT_MSG_NEWSETELEM = 12, NFT_MSG_DELSETELEM = 14;
const NFPROTO_INET = 1, AF_UNSPEC = 0;
const NFTA_SET_ELEM_LIST_TABLE = 1, NFTA_SET_ELEM_LIST_SET = 2, NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1, NFTA_SET_ELEM_KEY_END = 10;
const NFTA_DATA_VALUE = 1;
const protocolNumbers: Readonly<Record<string, number>> = { tcp: 6, udp: 17, sctp: 132 };

/** An element this encoder does not handle (the caller falls back to nft). */
export class NotEncodable extends Error {}

/** The network namespace to patch cannot be opened (the pod is gone). */
export class NetnsUnavailable extends Error {}

/** A concatenated interval element's start and end keys. */
export interface ConcatKey {
  readonly key: Uint8Array;
  readonly keyEnd: Uint8Array;
}

const addressBytes = (family: 4 | 6, value: bigint): Uint8Array => {
  const out = new Uint8Array(family === 4 ? 4 : 16);
  for (let i = out.length - 1; i >= 0; i--, value >>= 8n) out[i] = Number(value & 0xffn);
  return out;
};

/** `addr . proto . port` fields, each padded to 4 bytes (nf_tables registers). */
const concat = (family: 4 | 6, addr: bigint, protocol: number, port: number): Uint8Array => {
  const a = addressBytes(family, addr);
  const out = new Uint8Array(a.length + 8);
  out.set(a);
  out[a.length] = protocol;
  new DataView(out.buffer).setUint16(a.length + 4, port, false);
  return out;
};

/** The keys of one `CIDR . proto . port[-port]` element, as the policy renderer writes them (core/netpol/nft.ts). */
export function concatKey(element: string): ConcatKey {
  const m = /^(\S+) \. (tcp|udp|sctp) \. (\d{1,5})(?:-(\d{1,5}))?$/.exec(element);
  const span = m ? cidrSpan(m[1]) : null;
  if (!m || !span || !span.canonical) throw new NotEncodable(`not an (address . protocol . port) element: ${element}`);
  const from = Number(m[3]), to = Number(m[4] ?? m[3]);
  if (from > 65535 || to > 65535 || to < from) throw new NotEncodable(`bad port range in ${element}`);
  const protocol = protocolNumbers[m[2]];
  return {
    key: concat(span.family, span.span[0], protocol, from),
    keyEnd: concat(span.family, span.span[1], protocol, to),
  };
}

/** One set's elements to add or remove. */
export interface ElementBatchPart {
  readonly set: string;
  readonly elements: ReadonlyArray<ConcatKey>;
}

const nfgenmsg = (w: Writer, family: number, resId: number) => w.u8(family).u8(0).u8(resId >> 8).u8(resId & 0xff);

/**
 * The whole batch: begin, every removal, every addition, end. Each element message asks for an ACK; `acks` are
 * their sequence numbers (the batch's begin and end are never acknowledged).
 */
export function elementBatch(
  table: string,
  remove: ReadonlyArray<ElementBatchPart>,
  add: ReadonlyArray<ElementBatchPart>,
  firstSeq: number,
): { bytes: Uint8Array; acks: number[]; begin: number } {
  let seq = firstSeq;
  const acks: number[] = [];
  const control = (type: number) =>
    encodeMessage(type, NLM_F_REQUEST, seq++, nfgenmsg(new Writer(), AF_UNSPEC, NFNL_SUBSYS_NFTABLES).finish());
  const elements = (msg: number, flags: number, part: ElementBatchPart) => {
    const w = nfgenmsg(new Writer(), NFPROTO_INET, 0)
      .attrStr(NFTA_SET_ELEM_LIST_TABLE, table)
      .attrStr(NFTA_SET_ELEM_LIST_SET, part.set)
      .nest(NFTA_SET_ELEM_LIST_ELEMENTS, (list) => {
        for (const e of part.elements) {
          list.nest(NFTA_LIST_ELEM, (el) => {
            el.nest(NFTA_SET_ELEM_KEY, (d) => d.attr(NFTA_DATA_VALUE, e.key));
            el.nest(NFTA_SET_ELEM_KEY_END, (d) => d.attr(NFTA_DATA_VALUE, e.keyEnd));
          });
        }
      });
    acks.push(seq);
    return encodeMessage((NFNL_SUBSYS_NFTABLES << 8) | msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq++, w.finish());
  };
  const messages = [
    control(NFNL_MSG_BATCH_BEGIN),
    ...remove.filter((p) => p.elements.length > 0).map((p) => elements(NFT_MSG_DELSETELEM, 0, p)),
    ...add.filter((p) => p.elements.length > 0).map((p) => elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, p)),
    control(NFNL_MSG_BATCH_END),
  ];
  const bytes = new Uint8Array(messages.reduce((n, m) => n + m.length, 0));
  let off = 0;
  for (const m of messages) {
    bytes.set(m, off);
    off += m.length;
  }
  return { bytes, acks, begin: firstSeq };
}

const hostNetns = "/proc/thread-self/ns/net";
let nextSeq = Math.floor(Math.random() * 0x3fffffff) + 1;

/** A NETLINK_NETFILTER socket made inside the netns at `netnsPath` (setns → socket → setns back, on this thread). */
function socketIn(netnsPath: string): NetlinkSocket {
  let target: number;
  try {
    target = sys.open(netnsPath, O_RDONLY | O_CLOEXEC);
  } catch (e) {
    throw new NetnsUnavailable(`${netnsPath}: ${e instanceof Error ? e.message : e}`);
  }
  const host = sys.open(hostNetns, O_RDONLY | O_CLOEXEC);
  try {
    sys.setns(target, CLONE_NEWNET);
    try {
      return NetlinkSocket.open(NETLINK_NETFILTER);
    } finally {
      sys.setns(host, CLONE_NEWNET);
    }
  } finally {
    sys.close(target);
    sys.close(host);
  }
}

/**
 * Sends the batch on a NETLINK_NETFILTER socket of the netns at `netnsPath` and reads every element message's
 * answer. The send runs on another thread: the kernel processes the whole batch inside it, and a removal from a
 * concatenated set waits there for RCU grace periods (~10–25 ms measured) — patches of several pods then wait side
 * by side instead of one after the other on the JS thread. The answers are queued when the send returns. A kernel
 * error (an element to remove that is not there, a missing table or set) is a KernelError, and the kernel has then
 * applied nothing.
 */
export async function sendElementBatch(
  netnsPath: string,
  table: string,
  remove: ReadonlyArray<ElementBatchPart>,
  add: ReadonlyArray<ElementBatchPart>,
): Promise<void> {
  const { bytes, acks, begin } = elementBatch(table, remove, add, nextSeq);
  nextSeq = (nextSeq + acks.length + 2) % 0x3fffffff + 1;
  if (acks.length === 0) return;
  const sock = socketIn(netnsPath);
  try {
    await sys.sendNonblocking(sock.fd, bytes);
    const waiting = new Set(acks);
    const buf = new Uint8Array(64 * 1024);
    let failure: KernelError | undefined;
    while (waiting.size > 0) {
      const n = sys.recv(sock.fd, buf, MSG_TRUNC);
      if (n > buf.length) throw new KernelError(90, `netlink reply of ${n} bytes truncated`);
      for (const m of decodeMessages(buf.subarray(0, n))) {
        // An error on the batch as a whole (e.g. no memory) answers its first message.
        if (m.seq === begin) endOfReply(m);
        if (!waiting.delete(m.seq)) continue;
        try {
          endOfReply(m);
        } catch (e) {
          // The first error is the cause; the kernel answers the batch's other messages too (aborted).
          failure ??= e instanceof KernelError ? e : new KernelError(5, String(e));
        }
      }
    }
    if (failure) throw failure;
  } finally {
    sock.close();
  }
}
