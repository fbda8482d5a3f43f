// 00-danm.conf: DANM's sample decodes, defaults apply, unknown keys are ignored and mistakes are named.
import { CniConfigError, decodeCniConfig, isLegacyNaming, parseCniConfig } from "../../../core/api/cniconfig.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { compatDir, err, ok } from "./compat.ts";

Deno.test("DANM's sample 00-danm.conf decodes, its *_comment keys ignored", () => {
  const text = Deno.readTextFileSync(`${compatDir}/integration/cni_config/00-danm.conf`);
  const c = ok(parseCniConfig(text, "00-danm.conf"));
  assertEquals(c, {
    cniVersion: "0.3.1",
    name: "meta_cni",
    type: "danm",
    kubeconfig: "/etc/kubernetes/kubeconfig/danmc.yml",
    cniDir: "/etc/cni/net.d",
    namingScheme: "awesome",
    daemonSocket: "/run/danm/danm.sock",
  });
  assertEquals(isLegacyNaming(c), false);
});

Deno.test("optional keys default; runtime-added keys are ignored", () => {
  const c = ok(decodeCniConfig({
    cniVersion: "1.1.0",
    name: "danm",
    type: "danm",
    namingScheme: "legacy",
    daemonSocket: "/var/run/other.sock",
    runtimeConfig: { portMappings: [] },
    prevResult: { ips: [] },
    master: "eth0",
  }));
  assertEquals(c, {
    cniVersion: "1.1.0",
    name: "danm",
    type: "danm",
    cniDir: "/etc/cni/net.d",
    namingScheme: "legacy",
    daemonSocket: "/var/run/other.sock",
  });
  assert(isLegacyNaming(c));
});

Deno.test("mistakes are named with the source", () => {
  const e = err(decodeCniConfig({ cniVersion: "0.3.1", type: "flannel", cniDir: 5 }, "/etc/cni/net.d/00-danm.conf"));
  assert(e instanceof CniConfigError);
  assertMatch(e.message, /^reading the danm CNI configuration \/etc\/cni\/net\.d\/00-danm\.conf: /);
  assertMatch(e.reason, /name: required field is missing/);
  assertMatch(e.reason, /type: Expected "danm", got "flannel"/);
  assertMatch(e.reason, /cniDir: Expected string, got 5/);
  assertMatch(err(parseCniConfig("{ not json")).reason, /^not valid JSON/);
});
