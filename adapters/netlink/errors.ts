// Kernel error numbers and their mapping onto the port's typed errors. Shared by the live layer and the
// in-memory twin so that both report a condition with the same error class and message.
import { Effect } from "effect";
import {
  NetlinkBusy,
  type NetlinkError,
  NetlinkExists,
  NetlinkFailure,
  NetlinkInvalid,
  NetlinkNotFound,
  NetlinkPermission,
  NetlinkUnsupported,
} from "../../core/ports/netlink.ts";

/** A failure reported by the kernel (or the twin): a positive errno and, when known, the extended-ack text. */
export class KernelError extends Error {
  constructor(readonly errno: number, readonly detail?: string) {
    super(`${errnoName(errno)}${detail ? `: ${detail}` : ""}`);
  }
}

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EBADF: 9,
  EINVAL: 22,
  ERANGE: 34,
  ELOOP: 40,
  EBADMSG: 74,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  EHOSTUNREACH: 113,
} as const;

const errnoNames: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  28: "ENOSPC",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  61: "ENODATA",
  71: "EPROTO",
  74: "EBADMSG",
  75: "EOVERFLOW",
  90: "EMSGSIZE",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
  113: "EHOSTUNREACH",
};

export function errnoName(errno: number): string {
  return errnoNames[errno] ?? `errno ${errno}`;
}

/**
 * Maps a kernel failure onto the port's error classes. `creatingKind` marks a link creation, where an
 * unknown IFLA_INFO_KIND can come back as EINVAL/ENOTSUP "Unknown device type" rather than EOPNOTSUPP.
 */
export function toNetlinkError(
  e: KernelError,
  operation: string,
  object: string,
  creatingKind = false,
): NetlinkError {
  const fields = { operation, object, errno: e.errno, ...(e.detail ? { detail: e.detail } : {}) };
  if (creatingKind && e.errno === Errno.EINVAL && /unknown device type/i.test(e.detail ?? "")) {
    return new NetlinkUnsupported(fields);
  }
  switch (e.errno) {
    case Errno.EEXIST:
      return new NetlinkExists(fields);
    case Errno.ENODEV:
    case Errno.ENOENT:
    case Errno.ESRCH:
    case Errno.EADDRNOTAVAIL:
      return new NetlinkNotFound(fields);
    case Errno.EPERM:
    case Errno.EACCES:
      return new NetlinkPermission(fields);
    case Errno.EOPNOTSUPP:
      return new NetlinkUnsupported(fields);
    case Errno.EBUSY:
      return new NetlinkBusy(fields);
    case Errno.EINVAL:
    case Errno.ERANGE:
    case Errno.EAFNOSUPPORT:
      return new NetlinkInvalid(fields);
    default:
      return new NetlinkFailure({ ...fields, errnoName: errnoName(e.errno) });
  }
}

/**
 * Runs a synchronous kernel interaction as an Effect: a KernelError becomes the port's typed error naming
 * `operation` and `object`; anything else thrown is a defect (a bug, not a kernel answer).
 */
export const attempt = <A>(
  operation: string,
  object: string,
  f: () => A,
  creatingKind = false,
): Effect.Effect<A, NetlinkError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f());
    } catch (e) {
      if (e instanceof KernelError) return Effect.fail(toNetlinkError(e, operation, object, creatingKind));
      throw e;
    }
  });
