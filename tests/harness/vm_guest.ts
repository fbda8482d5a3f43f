// Runs inside the kernel-tier guest (see vm.ts): executes the job the host wrote to the results share.
const jobFile = Deno.args[0];
const job = JSON.parse(await Deno.readTextFile(jobFile)) as {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
};
// The guest is configured as a Kubernetes node is: packet forwarding on. New network namespaces inherit the IPv4
// settings of the initial one, so every test here also proves it does not depend on the kernel's defaults.
for (const key of ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]) {
  await Deno.writeTextFile(`/proc/sys/${key}`, "1");
}
const [cmd, ...args] = job.argv;
const child = new Deno.Command(cmd, { args, cwd: job.cwd, env: job.env, stdin: "null" }).spawn();
const status = await child.status;
Deno.exit(status.code);
