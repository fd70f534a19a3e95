// Builds the web UI into dist/ui, which the manager serves at `/` (src/apiserver/ui). Asset names carry content
// hashes so the manager can cache them forever.
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('../dist/ui', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    reportCompressedSize: false,
  },
  // `npm run ui:dev` proxies the APIs to a running `npm start`.
  server: {
    proxy: Object.fromEntries(['/v1', '/api', '/apis'].map((p) => [p, { target: 'http://127.0.0.1:9500' }])),
  },
});
