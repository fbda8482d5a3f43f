// Unicast VXLAN peers: the underlay addresses of the other nodes, from their Node objects.
import type { Node } from "../api/k8s.ts";
import { type Family, formatIp, parseIp } from "../net/ip.ts";

/**
 * Node annotation naming the node's VTEP address(es), comma-separated, when the VXLAN underlay is not the node's
 * InternalIP (e.g. a dedicated data-plane NIC). Set by whoever provisions the node.
 */
export const UnderlayAnnotation = "danm.io/vxlan-underlay";

/** The node's underlay addresses: the annotation if present, else its InternalIPs. Canonical text, de-duplicated. */
export function nodeUnderlay(node: Node): ReadonlyArray<string> {
  const annotated = node.metadata.annotations?.[UnderlayAnnotation];
  const raw = annotated !== undefined
    ? annotated.split(",").map((s) => s.trim()).filter((s) => s !== "")
    : (node.status?.addresses ?? []).filter((a) => a.type === "InternalIP").map((a) => a.address);
  const out: string[] = [];
  for (const text of raw) {
    const ip = parseIp(text);
    if (ip && !out.includes(formatIp(ip))) out.push(formatIp(ip));
  }
  return out;
}

/** Underlay addresses of `family` of every node but `self`, sorted (stable FDB order, stable messages). */
export function peerAddresses(nodes: Iterable<Node>, self: string, family: Family): ReadonlyArray<string> {
  const out = new Set<string>();
  for (const n of nodes) {
    if (n.metadata.name === self || n.metadata.deletionTimestamp !== undefined) continue;
    for (const a of nodeUnderlay(n)) if (parseIp(a)?.family === family) out.add(a);
  }
  return [...out].sort();
}
