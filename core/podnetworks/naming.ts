// DANM's interface naming (danm-spec §4.5), shared by the CNI (which names the interfaces) and the webhook (which
// refuses pods whose names could never be created).
//
// - The interface at sequence index 0 is always `eth0`: kubelet and the runtimes expect the pod IP there.
// - Index n > 0: the network's `container_prefix` + n (`ext1`, `int2`); `eth` + n when the network has no prefix.
// - `namingScheme: legacy` (00-danm.conf): exactly the prefix, without the index, when the network has one.
// - An explicitly requested name (the NPWG `interface` field) is used as is, except at index 0.
//
// DANM never checked the result; Linux refuses names longer than 15 bytes (IFNAMSIZ − 1) or containing '/', ':'
// or whitespace, and two interfaces of one pod cannot share a name (possible under `legacy`), so we check.

/** `namingScheme` of 00-danm.conf: "" (DANM's default) or "legacy". */
export type NamingScheme = "" | "legacy";

export const FirstInterfaceName = "eth0";
export const DefaultPrefix = "eth";
/** IFNAMSIZ is 16 including the terminating NUL. */
export const MaxInterfaceNameBytes = 15;

export interface NameInput {
  /** The network's `spec.Options.container_prefix` ("" or absent = `eth`). */
  readonly prefix?: string | undefined;
  /** A name the pod asked for (NPWG `interface`). */
  readonly requested?: string | undefined;
}

/** The name DANM gives the interface at sequence index `index` (0-based position in the pod's list). */
export function interfaceName(index: number, input: NameInput, scheme: NamingScheme = ""): string {
  if (index === 0) return FirstInterfaceName;
  if (input.requested) return input.requested;
  if (input.prefix) return scheme === "legacy" ? input.prefix : `${input.prefix}${index}`;
  return `${DefaultPrefix}${index}`;
}

const byteLength = (s: string) => new TextEncoder().encode(s).length;

/** Why the kernel would refuse `name` as an interface name, or undefined when it is valid. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name === "") return "must not be empty";
  if (name === "." || name === "..") return `"${name}" is not a valid interface name`;
  const bytes = byteLength(name);
  if (bytes > MaxInterfaceNameBytes) {
    return `"${name}" is ${bytes} bytes long; Linux interface names have at most ${MaxInterfaceNameBytes}`;
  }
  if (/[/:\s]/.test(name)) return `"${name}" contains '/', ':' or whitespace, which Linux interface names cannot`;
  return undefined;
}

/**
 * Why a `container_prefix` can never produce a valid name, or undefined. The prefix needs room for at least one
 * index digit unless the legacy scheme is used, which the network cannot know, so only the hard limits apply.
 */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === "") return undefined;
  if (byteLength(prefix) > MaxInterfaceNameBytes - 1) {
    return `"${prefix}" is ${byteLength(prefix)} bytes long; with the index appended it cannot fit the ` +
      `${MaxInterfaceNameBytes}-byte limit of Linux interface names`;
  }
  if (/[/:\s]/.test(prefix)) return `"${prefix}" contains '/', ':' or whitespace, which Linux interface names cannot`;
  return undefined;
}

export interface NamingProblem {
  /** Sequence index of the offending interface. */
  readonly index: number;
  readonly name: string;
  readonly reason: string;
}

export interface NamingPlan {
  readonly names: ReadonlyArray<string>;
  readonly problems: ReadonlyArray<NamingProblem>;
}

/** Names every interface of a pod in order and reports each that Linux would refuse or that repeats an earlier one. */
export function planInterfaceNames(inputs: ReadonlyArray<NameInput>, scheme: NamingScheme = ""): NamingPlan {
  const names: string[] = [];
  const problems: NamingProblem[] = [];
  const firstUse = new Map<string, number>();
  inputs.forEach((input, index) => {
    const name = interfaceName(index, input, scheme);
    names.push(name);
    if (index === 0 && input.requested && input.requested !== FirstInterfaceName) {
      problems.push({
        index,
        name: input.requested,
        reason: `the first interface of a pod is always ${FirstInterfaceName}; "${input.requested}" cannot be used`,
      });
      return;
    }
    const invalid = interfaceNameProblem(name);
    if (invalid) {
      problems.push({ index, name, reason: invalid });
      return;
    }
    const earlier = firstUse.get(name);
    if (earlier !== undefined) {
      problems.push({ index, name, reason: `"${name}" is already the name of interface ${earlier}` });
      return;
    }
    firstUse.set(name, index);
  });
  return { names, problems };
}
