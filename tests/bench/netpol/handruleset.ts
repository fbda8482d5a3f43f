// A hand-written ruleset of the shape core/netpol's renderer produces (table inet danm_netpol; conntrack shortcut
// first; ICMPv6 neighbour discovery allowed; one chain per policed interface and direction; peers in named interval
// sets), for `policies` policies applying to one pod, the allow rule the bench's traffic needs coming last.
import {
  allowedPort,
  clientAddress,
  clientAddress6,
  podInterface,
  serverAddress,
  serverAddress6,
} from "./throughput.ts";

type Direction = "ingress" | "egress";

function ruleset(direction: Direction, policies: number, peer: string, peer6: string): string {
  const addr = direction === "ingress" ? "saddr" : "daddr";
  const sets: string[] = [], rules: string[] = [];
  for (let p = 0; p < policies; p++) {
    const last = p === policies - 1;
    // Ten peer pods per policy plus an ipBlock; the last policy's peers include the bench's traffic partner.
    const v4 = Array.from({ length: 10 }, (_, i) => `10.${80 + (p >> 8)}.${p & 255}.${i + 1}`);
    const v6 = Array.from({ length: 10 }, (_, i) => `fd80::${p.toString(16)}:${i + 1}`);
    v4.push(`172.${16 + (p % 16)}.${p}.0/24`);
    if (last) v4.push(peer), v6.push(peer6);
    sets.push(`  set p${p}_v4 { type ipv4_addr; flags interval; elements = { ${v4.join(", ")} } }`);
    sets.push(`  set p${p}_v6 { type ipv6_addr; flags interval; elements = { ${v6.join(", ")} } }`);
    const ports = last ? `${allowedPort}` : `${8000 + p}-${8010 + p}`;
    for (const proto of ["tcp", "udp"]) {
      rules.push(`    ip ${addr} @p${p}_v4 ${proto} dport ${ports} accept`);
      rules.push(`    ip6 ${addr} @p${p}_v6 ${proto} dport ${ports} accept`);
    }
  }
  const [hook, match] = direction === "ingress" ? ["input", "iifname"] : ["output", "oifname"];
  return [
    "table inet danm_netpol {",
    ...sets,
    `  chain ${direction}_${podInterface} {`,
    "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept",
    ...rules,
    "    drop",
    "  }",
    `  chain ${hook} {`,
    `    type filter hook ${hook} priority filter; policy accept;`,
    "    ct state established,related accept",
    `    ${match} "${podInterface}" jump ${direction}_${podInterface}`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The client pod's egress ruleset and the server pod's ingress ruleset, `policies` policies each. */
export function handRulesets(policies: number): { client: string; server: string } {
  return {
    client: ruleset("egress", policies, serverAddress, serverAddress6),
    server: ruleset("ingress", policies, clientAddress, clientAddress6),
  };
}
