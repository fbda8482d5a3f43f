// Runs inside the kernel-tier guest (see vm.ts): executes the job the host wrote to the results share.
const jobFile = Deno.args[0];
const job = JSON.parse(await Deno.readTextFile(jobFile)) as {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
};
const [cmd, ...args] = job.argv;
const child = new Deno.Command(cmd, { args, cwd: job.cwd, env: job.env, stdin: "null" }).spawn();
const status = await child.status;
Deno.exit(status.code);
