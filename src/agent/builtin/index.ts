// Programs behind built-in catalog entries that stand in for container images of ordinary workloads (see
// BUILTIN_IMAGES in ../images.ts). Each file is a process entry point, free of the repository's other modules
// so that each pod costs one small Node.js process.

export const STATIC_WEB_ENTRY = 'static-web.js';
