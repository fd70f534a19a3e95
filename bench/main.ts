// `npm run bench -- NAME`: runs one benchmark from this folder. Each prints one line per figure:
// `figure: ours X unit, baseline Y unit, ratio R`, measured side by side in one run.

const benches: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  store: () => import('./store.js'),
  'image-transfer': () => import('./image-transfer.js'),
  'volume-io': () => import('./volume-io.js'),
  attach: () => import('./attach.js'),
  ui: () => import('./ui.js'),
  scale: () => import('./scale.js'),
};

const [name, ...args] = process.argv.slice(2);
const load = name ? benches[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run bench -- NAME [args]\nbenchmarks: ${Object.keys(benches).join(', ')}\n`);
  process.exit(2);
}
await (await load()).run(args);
