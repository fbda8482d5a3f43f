// The few libc calls the netlink adapter needs, bound with Deno's FFI.
//
// Every symbol is called synchronously: a synchronous FFI call runs on the calling (JS main) thread, which is
// the thread whose network namespace setns() switches. Nonblocking FFI calls run on other threads and would
// act in the wrong namespace — the one exception is `sendNonblocking`, a send on a socket already open (a socket
// stays bound to the namespace it was made in, whichever thread uses it), for requests the kernel may take a while
// to process inside sendmsg (nf_tables batches wait for RCU grace periods) without stalling the JS thread.

import { KernelError } from "./errors.ts";

const lib = (() => {
  let handle: ReturnType<typeof open> | undefined;
  function open() {
    return Deno.dlopen("libc.so.6", {
      socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
      bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
      setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
      send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
      sendNonblocking: {
        name: "send",
        parameters: ["i32", "buffer", "usize", "i32"],
        result: "isize",
        nonblocking: true,
      },
      sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
      recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
      close: { parameters: ["i32"], result: "i32" },
      // open(2) is variadic; with three integer-class arguments the x86-64 and aarch64 calls are identical.
      open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
      read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
      write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
      setns: { parameters: ["i32", "i32"], result: "i32" },
      unshare: { parameters: ["i32"], result: "i32" },
      mount: { parameters: ["buffer", "buffer", "buffer", "u64", "pointer"], result: "i32" },
      umount2: { parameters: ["buffer", "i32"], result: "i32" },
      __errno_location: { parameters: [], result: "pointer" },
    });
  }
  return () => (handle ??= open()).symbols;
})();

// errno is thread-local; reading it right after the failed call on the same thread is safe because no other
// libc call runs on this thread in between (JS is single-threaded and the call is synchronous).
function errno(): number {
  const p = lib().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

const cstr = (s: string): Uint8Array => new TextEncoder().encode(s + "\0");

function check(call: string, rc: number | bigint, detail?: string): number {
  const n = Number(rc);
  if (n < 0) throw new KernelError(errno(), detail ? `${call} ${detail}` : call);
  return n;
}

export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;
export const MSG_TRUNC = 0x20;

export const sys = {
  socket: (domain: number, type: number, protocol: number): number =>
    check("socket", lib().socket(domain, type, protocol)),
  bind: (fd: number, addr: Uint8Array): void => void check("bind", lib().bind(fd, addr, addr.byteLength)),
  setsockopt: (fd: number, level: number, name: number, value: Uint8Array): void =>
    void check("setsockopt", lib().setsockopt(fd, level, name, value, value.byteLength)),
  send: (fd: number, buf: Uint8Array): number => check("send", lib().send(fd, buf, BigInt(buf.byteLength), 0)),
  /** send(2) on another thread; errno is read there too, so a failure reports the result only. */
  sendNonblocking: async (fd: number, buf: Uint8Array): Promise<number> => {
    const n = Number(await lib().sendNonblocking(fd, buf, BigInt(buf.byteLength), 0));
    if (n < 0) throw new KernelError(5, "send (on a worker thread; errno not available)");
    return n;
  },
  sendto: (fd: number, buf: Uint8Array, addr: Uint8Array): number =>
    check("sendto", lib().sendto(fd, buf, BigInt(buf.byteLength), 0, addr, addr.byteLength)),
  recv: (fd: number, buf: Uint8Array, flags: number): number =>
    check("recv", lib().recv(fd, buf, BigInt(buf.byteLength), flags)),
  close: (fd: number): void => void lib().close(fd),
  open: (path: string, flags: number): number => check("open", lib().open(cstr(path), flags, 0), path),
  read: (fd: number, buf: Uint8Array): number => check("read", lib().read(fd, buf, BigInt(buf.byteLength))),
  write: (fd: number, buf: Uint8Array): number => check("write", lib().write(fd, buf, BigInt(buf.byteLength))),
  setns: (fd: number, nstype: number): void => void check("setns", lib().setns(fd, nstype)),
  unshare: (flags: number): void => void check("unshare", lib().unshare(flags)),
  mount: (source: string, target: string, fstype: string, flags: number): void =>
    void check("mount", lib().mount(cstr(source), cstr(target), cstr(fstype), BigInt(flags), null), target),
  umount2: (target: string, flags: number): void => void check("umount2", lib().umount2(cstr(target), flags), target),
};
