// The Http contract against the live layer (Deno.serve on 127.0.0.1, ephemeral ports: no privileges needed) and
// the memory twin.
import { layerLiveHttp } from "../../../adapters/http/live.ts";
import { layerMemoryHttp, MemoryHttpNetwork } from "../../../adapters/http/memory.ts";
import { httpContract } from "../../contract/http.ts";

httpContract("live http", () =>
  Promise.resolve({
    layer: layerLiveHttp,
    // A client per request: a pooled connection would hide which certificate new connections get.
    fetch: async (url, init = {}, caCerts = []) => {
      const client = Deno.createHttpClient({ caCerts: [...caCerts] });
      try {
        const r = await fetch(url, { ...init, client });
        return new Response(await r.arrayBuffer(), { status: r.status, headers: r.headers });
      } finally {
        client.close();
      }
    },
    release: () => Promise.resolve(),
  }));

httpContract("memory http", () => {
  const network = new MemoryHttpNetwork();
  return Promise.resolve({
    layer: layerMemoryHttp(network),
    fetch: (url, init = {}, caCerts = []) => network.fetch(url, { ...init, caCerts }),
    release: () => Promise.resolve(),
  });
});
