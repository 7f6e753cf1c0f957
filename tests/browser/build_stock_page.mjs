// Bundles a stock-Uppy test page (tests/browser/<folder>/page.js, with the Uppy release in that
// folder's node_modules) into <folder>/dist/page.js with the dashboard's esbuild
// (web/node_modules), beside a copy of <folder>/index.html. Run by tests/browser/stock_pages.py.
//
//   node build_stock_page.mjs uppy6
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const folder = process.argv[2];
if (!folder || !/^[a-z0-9-]+$/.test(folder)) throw new Error('usage: node build_stock_page.mjs <folder>');
const here = path.join(path.dirname(fileURLToPath(import.meta.url)), folder);
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const esbuild = require('esbuild');

await mkdir(path.join(here, 'dist'), { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['page.js'],
  bundle: true,
  format: 'esm',
  target: ['chrome100'],
  outfile: path.join(here, 'dist', 'page.js'),
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
await copyFile(path.join(here, 'index.html'), path.join(here, 'dist', 'index.html'));
console.log(`${folder} test page built`);
