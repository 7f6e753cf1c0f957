// The dashboard's texts in Debian's Chromium: web/src/i18n.js with the compiled catalogs
// (web/src/catalogs.js), bundled by esbuild as the dashboard is, evaluated in the page so
// Chromium's own Intl.PluralRules picks each plural's CLDR category (run by
// tests/browser/test_dashboard_i18n.py). Input: one JSON argument; output: one JSON line.
//
//   {"timeoutMs", "screenshot", "counts": {"<language>": [n, ...]}}

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { drive } from './browser.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const esbuild = require('esbuild');

const input = JSON.parse(process.argv[2]);
const report = {};

const bundle = await esbuild.build({
  entryPoints: [fileURLToPath(new URL('../../web/src/i18n.js', import.meta.url))],
  bundle: true,
  format: 'iife',
  globalName: 'dashboardI18n',
  target: ['chrome100'],
  write: false,
  logLevel: 'warning',
});

await drive(report, input.timeoutMs, input.screenshot, async (page, step) => {
  await page.setContent('<!doctype html><html><body></body></html>');
  await page.addScriptTag({ content: bundle.outputFiles[0].text });
  step('i18n loaded');
  report.texts = await page.evaluate((counts) => {
    const { I18n } = window.dashboardI18n;
    const out = {};
    for (const [language, numbers] of Object.entries(counts)) {
      const t = new I18n(language);
      out[language] = {
        language: t.language,
        categories: new Intl.PluralRules(language).resolvedOptions().pluralCategories,
        files: numbers.map((n) => t.ngettext('{count} file', '{count} files', n)),
        heading: t._('Project uploads'),
        ready: t.status('ready'),
      };
    }
    return out;
  }, input.counts);
  step('texts read');
});
