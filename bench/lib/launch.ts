/** The processes the gateway is compared with: the plain upstream, the reference proxy, nginx. */
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { NODE, REFERENCE, UPSTREAM } from "./paths.ts"
import { startChild, waitForHttp } from "./processes.ts"

export const startUpstream = async (port: number) => {
  const child = startChild("upstream", NODE, [UPSTREAM, "--port", String(port)])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}

/** The command of a service the gateway spawns: bench/upstream.mjs on `port` (e.g. `--boot-ms`, `--marks`). */
export const upstreamCommand = (port: number, args: ReadonlyArray<string>) => [
  NODE,
  UPSTREAM,
  "--port",
  String(port),
  ...args
]

export const startReference = async (upstreamPort: number, port: number) => {
  const child = startChild("reference", NODE, [
    REFERENCE,
    "--upstream",
    `http://127.0.0.1:${upstreamPort}`,
    "--port",
    String(port)
  ])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}

export const nginxBinary = () => {
  try {
    return execFileSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

/** nginx as a plain keep-alive reverse proxy: one worker (like one Node process), no buffering, no access log. */
export const startNginx = async (binary: string, dir: string, upstreamPort: number, port: number) => {
  const prefix = join(dir, "nginx")
  mkdirSync(prefix, { recursive: true })
  const conf = join(prefix, "nginx.conf")
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 300s;
    }
  }
}
`
  )
  const child = startChild("nginx", binary, ["-e", `${prefix}/error.log`, "-p", prefix, "-c", conf])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}
