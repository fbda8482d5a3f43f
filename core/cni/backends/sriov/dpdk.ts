// DPDK VFs (danm-spec §4.8): a VF bound to a user-space driver has no kernel netdev for the pod, so danm puts a
// dummy interface in its place — named as the attachment, link alias = the VF's PCI address, the VF's MAC, danm's
// addresses — so the application can read IP, VLAN, MAC and PCI address through ordinary kernel APIs. With a
// network VLAN the dummy is only the parent (named after the DanmEp, DANM's rule) of a VLAN link carrying the name.
import { Effect } from "effect";
import type { NetnsHandle } from "../../../ports/netlink.ts";
import { step } from "../../errors.ts";
import { configureInterface } from "../../attach/configure.ts";

/** The drivers sriov-cni treats as DPDK (user-space) ones. */
export const dpdkDrivers: ReadonlySet<string> = new Set(["vfio-pci", "igb_uio", "uio_pci_generic"]);

export interface DpdkInput {
  readonly pod: NetnsHandle;
  readonly ifName: string;
  /** The DanmEp's name: the VLAN case names the dummy parent after its first 14 characters. */
  readonly epName: string;
  readonly vlan: number | undefined;
  readonly pci: string;
  /** The VF's MAC as the delegate reported it; absent or all-zero = the kernel picks one. */
  readonly mac: string | undefined;
  readonly addresses: ReadonlyArray<string>;
  /** Every link is added here as soon as it exists (the named interface first), so a rollback finds it. */
  readonly created: string[];
}

export const createDpdkInterface = (i: DpdkInput) =>
  Effect.gen(function* () {
    const mac = i.mac && !/^(00:){5}00$/.test(i.mac) ? i.mac.toLowerCase() : undefined;
    const parent = i.vlan === undefined ? undefined : i.epName.slice(0, 14);
    const created = i.created;
    const base = parent ?? i.ifName;
    yield* i.pod.createLink({ kind: "dummy", name: base, ...(mac ? { mac } : {}) }).pipe(
      step(`create the DPDK dummy interface ${base}`),
    );
    created.unshift(base);
    if (parent !== undefined) {
      yield* i.pod.setLink(parent, { up: true, alias: i.pci }).pipe(step(`set ${parent} up`));
      yield* i.pod.createLink({ kind: "vlan", name: i.ifName, parent, id: i.vlan! }).pipe(
        step(`create VLAN ${i.vlan} ${i.ifName} on ${parent}`),
      );
      created.unshift(i.ifName);
    }
    yield* configureInterface(i.pod, i.ifName, i.addresses, { alias: i.pci });
  });
