#!/usr/bin/env node
// The `stratum` command: runs the compiled CLI (build with `npm run build`).
import '../dist/src/cli/main.js';
