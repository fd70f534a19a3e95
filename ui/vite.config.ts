// Builds the web UI into dist/ui, which the manager serves: index.html at `/`, everything else under `/ui/` (the
// paths the API guard leaves open; src/apiserver/ui). Asset names carry content hashes so they are cached for good.
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/ui/',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('../dist/ui', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    reportCompressedSize: false,
  },
  // `npm run ui:dev` proxies the APIs to a running `npm start` (plain HTTP is served to loopback). The dev page's
  // origin is not the manager's, so the proxy drops the Origin header: to the manager these are the proxy's own
  // requests, and they still need the token.
  server: {
    proxy: Object.fromEntries(['/v1', '/api', '/apis'].map((p) => [p, {
      target: 'http://127.0.0.1:9500',
      configure: (proxy: { on(ev: 'proxyReq', cb: (req: { removeHeader(name: string): void }) => void): void }) =>
        proxy.on('proxyReq', (req) => req.removeHeader('origin')),
    }])),
  },
});
