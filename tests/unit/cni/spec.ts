// Strict validators of CNI output per spec version, shared by the unit and integration tiers.
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";

/** What a plugin exec (or the node handler) answered. */
export interface Answer {
  readonly code: number;
  readonly stdout: string;
  readonly json: unknown;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function onlyKeys(where: string, o: Json, allowed: ReadonlyArray<string>, required: ReadonlyArray<string> = []) {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${where}: key "${k}" is not in this version's spec`);
  for (const k of required) if (!(k in o)) fail(`${where}: "${k}" is required`);
}

const cidr = /^([0-9.]+\/\d+|[0-9a-f:]+\/\d+)$/i;

/** A result of `version` as the CNI spec of that version defines it. */
export function validateResult(raw: unknown, version: string): void {
  if (!isObj(raw)) fail("result is not an object");
  const legacy = version.startsWith("0.");
  const v11 = version === "1.1.0";
  onlyKeys("result", raw, ["cniVersion", "interfaces", "ips", "routes", "dns"], ["cniVersion"]);
  assertEquals(raw.cniVersion, version, "result cniVersion");
  const ifaces = (raw.interfaces ?? []) as unknown[];
  assert(Array.isArray(ifaces), "interfaces is a list");
  for (const [i, x] of ifaces.entries()) {
    if (!isObj(x)) fail(`interfaces[${i}] is not an object`);
    onlyKeys(`interfaces[${i}]`, x, ["name", "mac", "sandbox", ...(v11 ? ["mtu", "socketPath", "pciID"] : [])], [
      "name",
    ]);
  }
  const ips = (raw.ips ?? []) as unknown[];
  for (const [i, x] of ips.entries()) {
    if (!isObj(x)) fail(`ips[${i}] is not an object`);
    onlyKeys(`ips[${i}]`, x, [...(legacy ? ["version"] : []), "address", "gateway", "interface"], [
      ...(legacy ? ["version"] : []),
      "address",
    ]);
    assertMatch(String(x.address), cidr, `ips[${i}].address`);
    if (legacy) assertEquals(x.version, String(x.address).includes(":") ? "6" : "4", `ips[${i}].version`);
    if (x.interface !== undefined) {
      assert(Number.isInteger(x.interface) && (x.interface as number) < ifaces.length, `ips[${i}].interface index`);
    }
  }
  for (const [i, x] of ((raw.routes ?? []) as unknown[]).entries()) {
    if (!isObj(x)) fail(`routes[${i}] is not an object`);
    onlyKeys(`routes[${i}]`, x, ["dst", "gw", ...(v11 ? ["mtu", "advmss", "priority", "table", "scope"] : [])], [
      "dst",
    ]);
  }
  if (raw.dns !== undefined) {
    if (!isObj(raw.dns)) fail("dns is not an object");
    onlyKeys("dns", raw.dns, ["nameservers", "domain", "search", "options"]);
  }
}

/** A CNI error: exit code non-zero, {cniVersion, code, msg[, details]} on stdout. */
export function validateError(a: Answer, code: number): void {
  assert(a.code !== 0, `expected a failure, got exit 0 with ${a.stdout}`);
  if (!isObj(a.json)) fail(`error output is not JSON: ${a.stdout}`);
  onlyKeys("error", a.json, ["cniVersion", "code", "msg", "details"], ["cniVersion", "code", "msg"]);
  assertEquals(a.json.code, code, `error code (${a.json.msg})`);
}
