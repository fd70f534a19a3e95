// Test image `stratum-test-http:v1`: an HTTP server on $PORT (address $HOST, default all) that prints a start
// line and one line per request to stdout, answers every path with 200 and the pod's name, and exits 0 on
// SIGTERM after printing that it got it. Kept free of the repository's other modules so each pod costs one
// small Node.js process.

import { createServer } from 'node:http';

const port = Number(process.env['PORT'] ?? '0');
const host = process.env['HOST'] || undefined;
const name = process.env['POD_NAME'] ?? 'stratum-test-http';

const server = createServer((req, res) => {
  process.stdout.write(`${new Date().toISOString()} ${req.method ?? 'GET'} ${req.url ?? '/'}\n`);
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`ok ${name}\n`);
});

server.listen(port, host, () => {
  const addr = server.address();
  const actual = addr !== null && typeof addr === 'object' ? addr.port : port;
  process.stdout.write(`stratum-test-http ${name} listening on port ${actual} (pid ${process.pid})\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    process.stdout.write(`stratum-test-http ${name} received ${sig}, exiting\n`);
    server.close();
    process.exit(0);
  });
}
