// One NETLINK_ROUTE socket: request/ack and dump exchanges with sequence numbers, multipart replies,
// NLMSG_ERROR decoding with extended-ack messages. Calls are synchronous (see libc.ts): the kernel answers
// rtnetlink requests while handling sendmsg, so a blocking recv returns at once.
import { Errno, KernelError } from "./errors.ts";
import { AF_NETLINK, MSG_TRUNC, SOCK_CLOEXEC, SOCK_RAW, sys } from "./libc.ts";
import {
  Attrs,
  decodeMessages,
  encodeMessage,
  type Message,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  NLMSGERR_ATTR_MSG,
} from "./wire.ts";

const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1, SO_RCVTIMEO = 20, SO_SNDBUF = 7, SO_RCVBUF = 8;
const SOL_NETLINK = 270, NETLINK_CAP_ACK = 10, NETLINK_EXT_ACK = 11;
/** The kernel caps one dump datagram at 32 KiB; twice that leaves room. */
const RECV_BUFFER = 64 * 1024;
const DUMP_RETRIES = 5;

const int32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
};

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buf = new Uint8Array(RECV_BUFFER);
  private closed = false;

  private constructor(readonly fd: number) {}

  /**
   * Opens a socket in the calling thread's current network namespace (it stays bound to it); rtnetlink unless
   * another netlink protocol is asked for (adapters/netlink/nftables.ts: NETLINK_NETFILTER).
   */
  static open(protocol = NETLINK_ROUTE): NetlinkSocket {
    const fd = sys.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    try {
      const addr = new Uint8Array(12);
      new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
      sys.bind(fd, addr);
      // Kernel error strings in acks, without the echoed request.
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, int32(1));
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, int32(1));
      sys.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, int32(1 << 20));
      sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int32(1 << 20));
      // A lost reply must not hang the (single, synchronous) JS thread forever.
      const tv = new Uint8Array(16);
      new DataView(tv.buffer).setBigInt64(0, 5n, true);
      sys.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv);
    } catch (e) {
      sys.close(fd);
      throw e;
    }
    return new NetlinkSocket(fd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.close(this.fd);
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  private receive(): Uint8Array {
    const n = sys.recv(this.fd, this.buf, MSG_TRUNC);
    if (n > this.buf.length) throw new KernelError(90, `netlink reply of ${n} bytes truncated`);
    return this.buf.subarray(0, n);
  }

  /**
   * Sends one request and collects the payloads of its data replies. Acked requests end with the ACK, dumps
   * with NLMSG_DONE; a kernel error becomes a KernelError.
   */
  private exchange(type: number, flags: number, body: Uint8Array): { payloads: Uint8Array[]; interrupted: boolean } {
    if (this.closed) throw new KernelError(9, "netlink socket closed");
    const seq = this.nextSeq();
    const dump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    sys.send(this.fd, encodeMessage(type, flags | NLM_F_REQUEST | (dump ? 0 : NLM_F_ACK), seq, body));
    const payloads: Uint8Array[] = [];
    let interrupted = false;
    for (;;) {
      for (const m of decodeMessages(this.receive())) {
        if (m.seq !== seq) continue; // a late reply to an earlier, abandoned request
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        const what = endOfReply(m);
        if (what === "end") return { payloads, interrupted };
        if (what === "data") payloads.push(m.payload.slice());
      }
    }
  }

  /** A request answered by an ACK (and, for GET requests, data messages before it). */
  request(type: number, flags: number, body: Uint8Array): Uint8Array[] {
    return this.exchange(type, flags, body).payloads;
  }

  /** A dump; restarted when the kernel flags it as interrupted by a concurrent change. */
  dump(type: number, body: Uint8Array): Uint8Array[] {
    for (let i = 0;; i++) {
      const r = this.exchange(type, NLM_F_DUMP, body);
      if (!r.interrupted || i >= DUMP_RETRIES) return r.payloads;
    }
  }
}

/**
 * What one reply message means for its exchange: data, the end (an ACK, NLMSG_DONE) or nothing (NLMSG_NOOP).
 * A kernel error, and an error message too short to hold its code, throw a KernelError.
 */
export function endOfReply(m: Message): "data" | "end" | "skip" {
  if (m.type === NLMSG_NOOP) return "skip";
  if (m.type === NLMSG_ERROR || (m.type === NLMSG_DONE && m.payload.length >= 4)) {
    if (m.payload.length < 4) throw new KernelError(Errno.EBADMSG, "netlink error message without an error code");
    const err = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength).getInt32(0, true);
    if (err < 0) throw new KernelError(-err, extAckMessage(m.type, m.flags, m.payload));
    return "end";
  }
  return m.type === NLMSG_DONE ? "end" : "data";
}

/** The NLMSGERR_ATTR_MSG string of an extended ack, if any. */
function extAckMessage(type: number, flags: number, payload: Uint8Array): string | undefined {
  if (!(flags & NLM_F_ACK_TLVS)) return undefined;
  let off = 4;
  if (type === NLMSG_ERROR) {
    // The echoed request: its header only when capped, else the whole message.
    const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const origLen = payload.length >= 4 + NLMSG_HDRLEN ? v.getUint32(4, true) : NLMSG_HDRLEN;
    off += flags & NLM_F_CAPPED ? NLMSG_HDRLEN : origLen;
  }
  return Attrs.parse(payload, off).str(NLMSGERR_ATTR_MSG);
}
