// Builds dist/webhook.wasm: src/webhook.js as a WebAssembly component of the
// `pier:deploy/plugin` world in ../../wit/0.2.0, with componentize-js's API (its CLI, through
// `jco componentize`, is not used). Run `npm ci` first.

import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist', 'webhook.wasm');

const started = performance.now();
const { component } = await componentize({
  sourcePath: join(here, 'src', 'webhook.js'),
  witPath: join(here, '..', '..', 'wit', '0.2.0'),
  worldName: 'pier:deploy/plugin',
  // The method uses no WASI at all: HTTP goes through the contract's `http` capability,
  // and it needs no randomness, clocks, timers, console or `fetch`. With every feature
  // disabled the component imports only `pier:deploy/*`. (An uncaught exception then
  // traps without a message on stderr; Pier shows a trap's stderr only for Rust panics
  // anyway, so `stdio` would add fourteen WASI imports for nothing.)
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`wrote ${out} (${component.byteLength} bytes) in ${seconds} s`);
