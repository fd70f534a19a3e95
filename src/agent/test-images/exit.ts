// Test image `stratum-test-exit:v1`: prints a line, waits $SLEEP_MS (default 0) and exits with $EXIT_CODE
// (default 0). Used to test restart policies, backoff and exit codes recorded while the agent is down.

const code = Number(process.env['EXIT_CODE'] ?? '0');
const sleepMs = Number(process.env['SLEEP_MS'] ?? '0');
process.stdout.write(`stratum-test-exit: pid ${process.pid} exiting with ${code} after ${sleepMs} ms\n`);
setTimeout(() => process.exit(code), sleepMs);
