// Bundles the dashboard into server/static/dist/ (not committed; `make run` and `make test`
// build it): app-<hash>.js, app-<hash>.css and index.html naming them.
//
//   node build.mjs            one build
//   node build.mjs --watch    rebuild on change (development)

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

import { BRAND, DEFAULT_LANGUAGE, I18n, PAGE_TEXTS } from './src/i18n.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, '..', 'server', 'static', 'dist');

async function writeIndex(metafile) {
  const outputs = Object.keys(metafile.outputs).map((file) => path.basename(file));
  const js = outputs.find((f) => /^app-.*\.js$/.test(f));
  const css = outputs.find((f) => /^app-.*\.css$/.test(f));
  if (!js || !css) throw new Error(`build produced no app bundle: ${outputs.join(', ')}`);
  const template = await readFile(path.join(here, 'src', 'index.html'), 'utf8');
  // The static page's texts in the default language, from the compiled catalogs (src/i18n.js).
  const i18n = new I18n(DEFAULT_LANGUAGE);
  const html = template
    .replaceAll('{{APP_JS}}', js)
    .replaceAll('{{APP_CSS}}', css)
    .replaceAll('{{LANG}}', i18n.language)
    .replaceAll('{{TITLE}}', `${i18n._(PAGE_TEXTS.title)} · ${BRAND}`)
    .replaceAll('{{NOSCRIPT}}', i18n._(PAGE_TEXTS.noscript));
  // index.html last: the server treats its presence as "the bundle is complete".
  await writeFile(path.join(outdir, 'manifest.json'), `${JSON.stringify({ js, css }, null, 2)}\n`);
  await writeFile(path.join(outdir, 'index.html'), html);
  return { js, css };
}

const options = {
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  entryNames: '[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  outdir,
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  loader: { '.svg': 'file', '.png': 'file', '.woff': 'file', '.woff2': 'file' },
};

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });

if (process.argv.includes('--watch')) {
  const ctx = await esbuild.context({
    ...options,
    plugins: [
      {
        name: 'index',
        setup(build) {
          build.onEnd(async (result) => {
            if (result.metafile) console.log('dashboard built:', await writeIndex(result.metafile));
          });
        },
      },
    ],
  });
  await ctx.watch();
} else {
  const result = await esbuild.build(options);
  const names = await writeIndex(result.metafile);
  const size = (name) => result.metafile.outputs[path.relative(here, path.join(outdir, name))]?.bytes ?? 0;
  console.log(
    `dashboard built in ${path.relative(process.cwd(), outdir) || outdir}: ` +
      `${names.js} (${Math.round(size(names.js) / 1024)} KiB), ${names.css} (${Math.round(size(names.css) / 1024)} KiB)`,
  );
}
