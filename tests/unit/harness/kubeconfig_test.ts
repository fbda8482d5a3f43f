// The kubeconfig the harness hands to tests and to danm's components loads in client-node as expected.
import * as k8s from "@kubernetes/client-node";
import { assertEquals } from "../../harness/assert.ts";
import { kubeconfigYaml } from "../../harness/apiserver.ts";

Deno.test("harness kubeconfig carries the server, CA and client certificate", () => {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(kubeconfigYaml("https://127.0.0.1:6443", "CA-PEM", {
    certFile: "",
    keyFile: "",
    certPem: "CERT-PEM",
    keyPem: "KEY-PEM",
  }));
  assertEquals(kc.getCurrentCluster()?.server, "https://127.0.0.1:6443");
  assertEquals(atob(kc.getCurrentCluster()?.caData ?? ""), "CA-PEM");
  assertEquals(atob(kc.getCurrentUser()?.certData ?? ""), "CERT-PEM");
});
