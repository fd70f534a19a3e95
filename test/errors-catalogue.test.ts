// Keeps docs/ in step with the code: every error code that an error class of src/ declares (its `errors.ts`) is
// documented, in backticks, in one of the docs (docs/errors.md, or the API documents it points to).

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// dist/test/errors-catalogue.test.js → the repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function errorFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return errorFiles(p);
    return n === 'errors.ts' ? [p] : [];
  });
}

/** The code literals of one errors.ts: quoted identifiers in its declarations, not its class names. */
function codesOf(src: string): string[] {
  const classes = new Set([...src.matchAll(/class (\w+)/g)].map((m) => m[1]));
  const codes = new Set<string>();
  for (const line of src.split('\n')) {
    // Uses of a code (comparisons, throws, imports) are not declarations.
    if (/import|new |throw|instanceof|===|this\.name|readonly name/.test(line)) continue;
    for (const m of line.matchAll(/'([A-Z][A-Za-z0-9_]+)'/g)) if (!classes.has(m[1]!)) codes.add(m[1]!);
  }
  return [...codes];
}

test('every error code declared in src/**/errors.ts is documented in docs/', () => {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((n) => n.endsWith('.md'))
    .map((n) => readFileSync(join(ROOT, 'docs', n), 'utf8'))
    .join('\n');
  const files = errorFiles(join(ROOT, 'src'));
  assert.ok(files.length >= 10, `error classes found: ${files.length}`);
  const missing = files.flatMap((f) => codesOf(readFileSync(f, 'utf8')).filter((c) => !docs.includes(`\`${c}\``)).map((c) => `${relative(ROOT, f)}: ${c}`));
  assert.deepEqual(missing, [], 'codes without a line in docs/ (add them to docs/errors.md or the API document of their component)');
});

test('every error code has one spelling: PascalCase, as Kubernetes reasons are', () => {
  const wrong = errorFiles(join(ROOT, 'src')).flatMap((f) => codesOf(readFileSync(f, 'utf8')).filter((c) => !/^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$/.test(c)).map((c) => `${relative(ROOT, f)}: ${c}`));
  assert.deepEqual(wrong, []);
});
