// The core kinds decode objects written by others: unknown fields are dropped, modelled ones typed.
import { Schema } from "effect";
import { EndpointSlice, NetworkAttachmentDefinitionResource, Pod, Service } from "../../../core/api/k8s.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("Pod decodes a full apiserver object and keeps only the modelled fields", () => {
  const pod = Schema.decodeUnknownSync(Pod)({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "n", managedFields: [{ manager: "x" }], labels: { a: "b" } },
    spec: {
      nodeName: "node1",
      dnsPolicy: "ClusterFirst",
      containers: [{
        name: "c",
        image: "i",
        ports: [{ name: "http", containerPort: 80, protocol: "TCP" }],
        resources: { limits: { cpu: "100m", "danm.io/sriov": 1 } },
        imagePullPolicy: "Always",
      }],
    },
    status: { phase: "Running", podIP: "10.0.0.5", podIPs: [{ ip: "10.0.0.5" }], qosClass: "BestEffort" },
  });
  assertEquals(pod, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "n", labels: { a: "b" } },
    spec: {
      nodeName: "node1",
      containers: [{
        name: "c",
        image: "i",
        ports: [{ name: "http", containerPort: 80, protocol: "TCP" }],
        resources: { limits: { cpu: "100m", "danm.io/sriov": 1 } },
      }],
    },
    status: { phase: "Running", podIP: "10.0.0.5", podIPs: [{ ip: "10.0.0.5" }] },
  });
});

Deno.test("Service targetPort is a number or a port name; EndpointSlice conditions decode", () => {
  const svc = Schema.decodeUnknownSync(Service)({
    metadata: { name: "s" },
    spec: {
      ports: [{ port: 80, targetPort: "http" }, { port: 53, targetPort: 5353, protocol: "UDP" }],
      clusterIP: "None",
    },
  });
  assertEquals(svc.spec?.ports?.map((p) => p.targetPort), ["http", 5353]);
  const slice = Schema.decodeUnknownSync(EndpointSlice)({
    metadata: { name: "s-abc" },
    addressType: "IPv6",
    endpoints: [{ addresses: ["fd00::1"], conditions: { ready: false, serving: true, terminating: true } }],
  });
  assertEquals(slice.endpoints[0].conditions?.terminating, true);
});

Deno.test("NetworkAttachmentDefinition resource names the k8s.cni.cncf.io CRD", () => {
  const rt = NetworkAttachmentDefinitionResource;
  assertEquals([rt.group, rt.version, rt.plural, rt.namespaced], [
    "k8s.cni.cncf.io",
    "v1",
    "network-attachment-definitions",
    true,
  ]);
});
