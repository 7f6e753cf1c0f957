// Bundles page.js (stock Uppy 5 from this folder's node_modules) into dist/uppy5.js with
// the dashboard's esbuild (web/node_modules). Run by tests/browser/test_uppy5.py.
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(new URL('../../../web/package.json', import.meta.url));
const esbuild = require('esbuild');

await mkdir(path.join(here, 'dist'), { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['page.js'],
  bundle: true,
  format: 'esm',
  target: ['chrome100'],
  outfile: path.join(here, 'dist', 'uppy5.js'),
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
await copyFile(path.join(here, 'index.html'), path.join(here, 'dist', 'index.html'));
console.log('uppy5 test page built');
