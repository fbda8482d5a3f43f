// TenantConfig rules (danm-spec §7.6) and the TenantNetwork automation built on them (§7.5), as pure functions.
//
// Rules: T1 hostDevices or networkIds non-empty; T2 every profile has a name; T3 vniType and vniRange together;
// T4 vniType is vlan or vxlan; T5 no alloc (danm derives VNI usage from the networks; a value a migrated DANM
// object carries may stay unchanged on UPDATE); T6 vniRange parses as a cpuset list; T7 every VNI within the
// type's real range (vlan 1–4094, vxlan 1–16777215; DANM capped both at 5000); T8 networkIds keys and values
// non-empty; T9 a NetworkID for a dynamic type has at most 10 characters. Ours: NIC names are valid interface
// names; two profiles of one device and vniType must not overlap (DANM's own example overlaps ens4/ens5 at 2000,
// which is fine: different devices); no duplicate profile; on UPDATE, no VNI in use by a network may fall out
// of its profile's range (shrinking below in-use IDs, or dropping the profile).
//
// Automation (mutating TenantNetwork CREATE), deterministic where DANM was random:
//   - dynamic NetworkTypes only: a requested device_pool or host_device must match a profile by name; with
//     neither, the host-device profiles (no '/' in the name) are candidates. Among the matching profiles the one
//     with the fewest TenantNetworks wins, ties going to the earlier profile.
//   - host_device is set to the chosen profile when neither was given; a vniType means a VLAN/VNI comes from the
//     profile's range (lowest free, claims.ts).
//   - networkIds[NetworkType] (key matched case-insensitively) overrides NetworkID, for any NetworkType.
import { ReservedIpPrivilege } from "../api/reservedip.ts";
import type { IfaceProfile, TenantConfig, TenantNetwork } from "../api/danm.ts";
import { interfaceNameProblem } from "../podnetworks/naming.ts";
import { DefaultNetworkType, isDynamicType, MaxDynamicNetworkIdLength } from "./networks.ts";
import { type Problem, problem } from "./problems.ts";
import {
  firstOverlap,
  isVniType,
  parseVniRange,
  rangeContains,
  vniMaximum,
  type VniRange,
  type VniType,
} from "./vni.ts";

const nonEmpty = (s: string | undefined): s is string => s !== undefined && s !== "";

/** A VNI some network holds: on `device` (host_device or device_pool), of `type`. */
export interface VniUse {
  readonly device: string;
  readonly type: VniType;
  readonly id: number;
  /** "TenantNetwork ns/name" etc., for messages. */
  readonly user: string;
}

export interface ParsedProfile {
  readonly index: number;
  readonly profile: IfaceProfile;
  readonly type?: VniType;
  readonly range?: VniRange;
}

/** The profiles with their ranges parsed; profiles with invalid ranges are left without one. */
export function parsedProfiles(tc: TenantConfig): ParsedProfile[] {
  return (tc.hostDevices ?? []).map((profile, index) => {
    const type = profile.vniType !== undefined && isVniType(profile.vniType) ? profile.vniType : undefined;
    const parsed = profile.vniRange !== undefined ? parseVniRange(profile.vniRange) : undefined;
    return {
      index,
      profile,
      ...(type ? { type } : {}),
      ...(parsed && "range" in parsed ? { range: parsed.range } : {}),
    };
  });
}

export interface TenantConfigContext {
  readonly operation: "CREATE" | "UPDATE";
  readonly old?: TenantConfig;
  /** VNIs held by networks; checked against the new ranges on UPDATE of the TenantConfig in use. */
  readonly inUse: ReadonlyArray<VniUse>;
}

/** What allowedClusterNetworks may grant on a ClusterNetwork (danm-spec Appendix A). */
const clusterNetworkPrivileges = [ReservedIpPrivilege] as const;

export function checkTenantConfig(tc: TenantConfig, c: TenantConfigContext): Problem[] {
  const out: Problem[] = [];
  const devices = tc.hostDevices ?? [];
  const ids = tc.networkIds ?? {};
  const allowed = tc.allowedClusterNetworks ?? [];
  if (devices.length === 0 && Object.keys(ids).length === 0 && allowed.length === 0) {
    out.push(
      problem(
        "hostDevices",
        "tenantconfig-not-empty",
        "hostDevices, networkIds or allowedClusterNetworks must be given",
      ),
    );
  }
  const grantedTo = new Map<string, number>();
  allowed.forEach((a, i) => {
    const at = `allowedClusterNetworks[${i}]`;
    if (!nonEmpty(a.name)) out.push(problem(`${at}.name`, "allowed-network", "must name a ClusterNetwork"));
    else if (grantedTo.has(a.name)) {
      out.push(
        problem(
          `${at}.name`,
          "allowed-network",
          `${a.name} is already listed (allowedClusterNetworks[${grantedTo.get(a.name)}])`,
        ),
      );
    } else grantedTo.set(a.name, i);
    (a.privileges ?? []).forEach((p, j) => {
      if (!(clusterNetworkPrivileges as ReadonlyArray<string>).includes(p)) {
        out.push(
          problem(
            `${at}.privileges[${j}]`,
            "allowed-network-privilege",
            `"${p}" is no privilege (known: ${clusterNetworkPrivileges.join(", ")})`,
          ),
        );
      }
    });
  });
  const oldProfiles = c.old?.hostDevices ?? [];
  devices.forEach((p, i) => {
    const at = `hostDevices[${i}]`;
    if (!nonEmpty(p.name)) out.push(problem(`${at}.name`, "profile-name", "must be set"));
    else if (!p.name.includes("/")) {
      const bad = interfaceNameProblem(p.name);
      if (bad) out.push(problem(`${at}.name`, "profile-name", bad));
    }
    const hasType = nonEmpty(p.vniType), hasRange = nonEmpty(p.vniRange);
    if (hasType !== hasRange) {
      out.push(
        problem(
          hasType ? `${at}.vniRange` : `${at}.vniType`,
          "vni-type-with-range",
          `vniType and vniRange must be given together (${hasType ? "vniRange" : "vniType"} is missing)`,
        ),
      );
    }
    if (hasType && !isVniType(p.vniType!)) {
      out.push(problem(`${at}.vniType`, "vni-type", `"${p.vniType}" is neither vlan nor vxlan`));
    }
    if (nonEmpty(p.alloc) && !(c.operation === "UPDATE" && oldProfiles.some((o) => o.alloc === p.alloc))) {
      out.push(
        problem(
          `${at}.alloc`,
          "no-manual-allocation",
          "allocation state cannot be set: danm derives VNI usage from the TenantNetworks",
        ),
      );
    }
    if (hasRange) {
      const parsed = parseVniRange(p.vniRange!);
      if ("error" in parsed) {
        out.push(problem(`${at}.vniRange`, "vni-range-syntax", `not a list of IDs and ranges: ${parsed.error}`));
      } else if (parsed.range.length === 0) {
        out.push(problem(`${at}.vniRange`, "vni-range-syntax", "names no ID"));
      } else if (hasType && isVniType(p.vniType!)) {
        const max = vniMaximum[p.vniType];
        const lo = parsed.range[0].start, hi = parsed.range[parsed.range.length - 1].end;
        if (lo < 1 || hi > max) {
          out.push(
            problem(
              `${at}.vniRange`,
              "vni-range-limits",
              `${p.vniType} IDs must be between 1 and ${max}, got ${lo < 1 ? lo : hi}`,
            ),
          );
        }
      }
    }
  });
  // Overlaps and duplicates between profiles of the same device and type.
  const profiles = parsedProfiles(tc);
  for (let i = 0; i < profiles.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = profiles[j], b = profiles[i];
      if (!nonEmpty(a.profile.name) || a.profile.name !== b.profile.name) continue;
      if ((a.profile.vniType ?? "") !== (b.profile.vniType ?? "")) continue;
      if (a.range && b.range) {
        const shared = firstOverlap(a.range, b.range);
        if (shared !== undefined) {
          out.push(
            problem(
              `hostDevices[${i}].vniRange`,
              "vni-range-overlap",
              `overlaps hostDevices[${j}] (${a.profile.name}, ${a.profile.vniType}) at ${shared}`,
            ),
          );
        }
      } else if (!nonEmpty(a.profile.vniType)) {
        out.push(problem(`hostDevices[${i}]`, "duplicate-profile", `repeats hostDevices[${j}] (${a.profile.name})`));
      }
    }
  }
  for (const [type, id] of Object.entries(ids)) {
    const at = `networkIds[${JSON.stringify(type)}]`;
    if (type === "") out.push(problem("networkIds", "network-ids", "a NetworkType key must not be empty"));
    if (!nonEmpty(id)) out.push(problem(at, "network-ids", "the NetworkID must not be empty"));
    else if (isDynamicType(type) && id.length > MaxDynamicNetworkIdLength) {
      out.push(
        problem(
          at,
          "network-id-length",
          `"${id}" is longer than ${MaxDynamicNetworkIdLength} characters, too long for host interface names`,
        ),
      );
    }
  }
  if (c.operation === "UPDATE") {
    for (const use of c.inUse) {
      const covered = profiles.some((p) =>
        p.profile.name === use.device && p.type === use.type && p.range && rangeContains(p.range, use.id)
      );
      if (covered) continue;
      const same = profiles.find((p) => p.profile.name === use.device && p.type === use.type);
      out.push(
        problem(
          same ? `hostDevices[${same.index}].vniRange` : "hostDevices",
          "vni-in-use",
          `would drop ${use.type} ${use.id} of ${use.device}, in use by ${use.user}`,
        ),
      );
      if (out.length >= 10) break;
    }
  }
  return out;
}

// ---- TenantNetwork automation -------------------------------------------------------------------------------------

export interface Assignment {
  /** The TenantNetwork with host_device and NetworkID filled in (no VNI yet). */
  readonly network: TenantNetwork;
  /** When set, a VNI of this type on this device must be taken from `range`. */
  readonly vni?: { readonly device: string; readonly type: VniType; readonly range: VniRange };
  /** The profile used ("ens4 (vlan 1000-2000)"), for messages. */
  readonly profile?: string;
}

/** How many TenantNetworks use a profile: device name and vniType ("" for none). */
export type ProfileLoad = (device: string, vniType: string) => number;

const tcName = (tc: TenantConfig) => `TenantConfig ${tc.metadata.name ?? ""}`;

export function assignTenantNetwork(
  net: TenantNetwork,
  tc: TenantConfig | undefined,
  load: ProfileLoad,
): { readonly assignment: Assignment } | { readonly problems: Problem[] } {
  if (tc === undefined) {
    return {
      problems: [
        problem("", "tenantconfig-required", "no TenantConfig exists to take the TenantNetwork's parameters from"),
      ],
    };
  }
  const type = nonEmpty(net.spec.NetworkType) ? net.spec.NetworkType : DefaultNetworkType;
  const o = net.spec.Options ?? {};
  let options = o;
  let vni: Assignment["vni"];
  let chosenLabel: string | undefined;
  if (isDynamicType(type)) {
    const profiles = parsedProfiles(tc);
    let candidates: ParsedProfile[];
    if (nonEmpty(o.device_pool)) {
      candidates = profiles.filter((p) => p.profile.name === o.device_pool);
      if (candidates.length === 0) {
        return {
          problems: [
            problem(
              "spec.Options.device_pool",
              "tenant-device-allowed",
              `"${o.device_pool}" is not allowed to be used by tenants (not a profile of ${tcName(tc)})`,
            ),
          ],
        };
      }
    } else if (nonEmpty(o.host_device)) {
      candidates = profiles.filter((p) => p.profile.name === o.host_device && !p.profile.name.includes("/"));
      if (candidates.length === 0) {
        return {
          problems: [
            problem(
              "spec.Options.host_device",
              "tenant-device-allowed",
              `"${o.host_device}" is not allowed to be used by tenants (not a profile of ${tcName(tc)})`,
            ),
          ],
        };
      }
    } else {
      candidates = profiles.filter((p) => nonEmpty(p.profile.name) && !p.profile.name.includes("/"));
      if (candidates.length === 0) {
        return {
          problems: [
            problem(
              "spec.Options.host_device",
              "tenant-device-choice",
              `${tcName(tc)} has no host device profile to choose from (device pools are never chosen ` +
                `automatically: the pod's resource request must name the pool)`,
            ),
          ],
        };
      }
    }
    // Least used first; Array.prototype.sort is stable, so ties keep the TenantConfig's order.
    const chosen = [...candidates].sort((a, b) =>
      load(a.profile.name, a.profile.vniType ?? "") - load(b.profile.name, b.profile.vniType ?? "")
    )[0];
    if (!nonEmpty(o.host_device) && !nonEmpty(o.device_pool)) {
      options = { ...options, host_device: chosen.profile.name };
    }
    chosenLabel = chosen.profile.vniType
      ? `${chosen.profile.name} (${chosen.profile.vniType} ${chosen.profile.vniRange})`
      : chosen.profile.name;
    if (chosen.type && chosen.range) {
      vni = { device: chosen.profile.name, type: chosen.type, range: chosen.range };
    } else if (chosen.profile.vniType) {
      return {
        problems: [
          problem(
            `spec.Options.${nonEmpty(o.device_pool) ? "device_pool" : "host_device"}`,
            "tenant-device-allowed",
            `profile hostDevices[${chosen.index}] of ${tcName(tc)} has an invalid vniType/vniRange`,
          ),
        ],
      };
    }
  }
  const override = Object.entries(tc.networkIds ?? {}).find(([k]) => k.toLowerCase() === type.toLowerCase());
  const spec = {
    ...net.spec,
    ...(override ? { NetworkID: override[1] } : {}),
    ...(options === o ? {} : { Options: options }),
  };
  return {
    assignment: {
      network: { ...net, spec },
      ...(vni ? { vni } : {}),
      ...(chosenLabel ? { profile: chosenLabel } : {}),
    },
  };
}
