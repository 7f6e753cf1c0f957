// Drives the live dashboard in Debian's Chromium with playwright-core (run by
// tests/browser/test_dashboard.py). Input: one JSON argument; output: one JSON line.
//
//   {"url", "projectId", "token", "screenshot", "timeoutMs",
//    "files": [{"path", "name", "mimeType", "expect": "ready" | "failed"}]}
//
// Loads the page, gives the files to the Uppy Dashboard's file input, waits until each
// row reaches its expected status (ready: with its thumbnail loaded; failed: with its
// reason shown), saves a screenshot and reports what it saw (statuses in order, rows,
// thumbnails, console errors).

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.BUILDPEER_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const input = JSON.parse(process.argv[2]);
const started = Date.now();
const elapsed = () => Date.now() - started;
const report = {
  steps: [],
  console: [],
  pageErrors: [],
  dialogs: [],
  pushes: [], // publications the page received over its WebSocket: {upload_id, type, status}
  failedRequests: [],
  statuses: {},
  rows: {},
};
const step = (name) => report.steps.push({ name, ms: elapsed() });

const profile = await mkdtemp(path.join(os.tmpdir(), 'buildpeer-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    locale: 'es-MX',
    timeout: 30_000,
  });
  step('browser started');
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(input.timeoutMs);
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') report.console.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err)));
  page.on('websocket', (ws) => {
    ws.on('framereceived', ({ payload }) => {
      for (const line of String(payload).split('\n')) {
        try {
          const data = JSON.parse(line)?.push?.pub?.data;
          if (data) report.pushes.push({ upload_id: data.upload_id ?? data.upload?.id, type: data.type, status: data.status });
        } catch {
          // not JSON: ignore
        }
      }
    });
  });
  page.on('dialog', (dialog) => {
    report.dialogs.push(dialog.message()); // an injected script would show up here
    dialog.dismiss().catch(() => {});
  });
  page.on('requestfailed', (req) => report.failedRequests.push(`${req.method()} ${req.url()} ${req.failure()?.errorText}`));

  // The statuses each row goes through, as the page renders them.
  await page.addInitScript(() => {
    window.__statuses = {};
    const record = () => {
      for (const row of document.querySelectorAll('tr.upload')) {
        const name = row.querySelector('.file-name')?.textContent;
        const s = row.dataset.status;
        if (!name || !s) continue;
        const seen = (window.__statuses[name] ??= []);
        if (seen[seen.length - 1] !== s) seen.push(s);
      }
    };
    new MutationObserver(record).observe(document, { subtree: true, childList: true, attributes: true });
  });

  const url = `${input.url}/?project=${encodeURIComponent(input.projectId)}&token=${encodeURIComponent(input.token)}`;
  await page.goto(url, { waitUntil: 'load' });
  report.addressBar = page.url();
  report.lang = await page.evaluate(() => document.documentElement.lang);
  report.heading = await page.textContent('h1');
  await page.waitForSelector('#connection[data-state="connected"]');
  report.connection = await page.textContent('#connection');
  step('page live');

  const fileInput = page.locator('#uploader input.uppy-Dashboard-input[type="file"]:not([webkitdirectory])').first();
  const files = [];
  for (const f of input.files) files.push({ name: f.name, mimeType: f.mimeType, buffer: await readFile(f.path) });
  await fileInput.setInputFiles(files);
  step('files given to uppy');

  await page.waitForFunction((expected) => {
    const rows = [...document.querySelectorAll('tr.upload')];
    return expected.every(({ name, expect }) => {
      const row = rows.find((r) => r.querySelector('.file-name')?.textContent === name);
      if (!row || row.dataset.status !== expect) return false;
      if (expect === 'ready') {
        const img = row.querySelector('img.thumb-img');
        return Boolean(img && img.complete && img.naturalWidth > 0);
      }
      return !row.querySelector('.reason').hidden;
    });
  }, input.files.map(({ name, expect }) => ({ name, expect })));
  step('rows reached their status');

  report.statuses = await page.evaluate(() => window.__statuses);
  report.rows = await page.evaluate(() => {
    const out = {};
    for (const row of document.querySelectorAll('tr.upload')) {
      const name = row.querySelector('.file-name');
      const img = row.querySelector('img.thumb-img');
      out[name.textContent] = {
        id: row.dataset.uploadId,
        status: row.dataset.status,
        badge: row.querySelector('.badge').textContent,
        nameChildElements: name.children.length,
        details: row.querySelector('.file-details').textContent,
        reason: row.querySelector('.reason').hidden ? null : row.querySelector('.reason').textContent,
        thumbnail: img
          ? { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, alt: img.alt, host: new URL(img.src).host }
          : null,
      };
    }
    return out;
  });
  report.count = await page.textContent('.count');
  report.uppyComplete = (await page.locator('.uppy-StatusBar.is-complete').count()) > 0;
  await page.screenshot({ path: input.screenshot, fullPage: true });
  step('screenshot');
  report.ok = true;
} catch (err) {
  report.ok = false;
  report.error = String(err && err.stack ? err.stack : err);
  try {
    const page = context?.pages()[0];
    if (page) {
      report.statuses = await page.evaluate(() => window.__statuses ?? {}).catch(() => ({}));
      report.html = (await page.content()).slice(0, 20000);
      await page.screenshot({ path: input.screenshot, fullPage: true });
    }
  } catch {
    // the report says what failed
  }
} finally {
  await context?.close().catch(() => {});
  await rm(profile, { recursive: true, force: true });
}
report.totalMs = elapsed();
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.ok ? 0 : 1);
