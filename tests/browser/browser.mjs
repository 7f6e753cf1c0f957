// Debian's Chromium under playwright-core (no browser downloads here): a fresh profile
// per run, removed afterwards. Shared by the browser-test drivers.

import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.BUILDPEER_CHROMIUM || '/usr/bin/chromium';
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

/** `{context, page, report, close}`; the report collects console errors, page errors, dialogs. */
export async function openBrowser(report, timeoutMs) {
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
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeoutMs);
  report.console ??= [];
  report.pageErrors ??= [];
  report.dialogs ??= [];
  report.failedRequests ??= [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') report.console.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err)));
  page.on('requestfailed', (req) =>
    report.failedRequests.push(`${req.method()} ${req.url()} ${req.failure()?.errorText}`),
  );
  page.on('dialog', (dialog) => {
    report.dialogs.push(dialog.message()); // an injected script would show up here
    dialog.dismiss().catch(() => {});
  });
  return {
    context,
    page,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Run `body(page)` and print the report as one JSON line; exit 1 on failure. */
export async function drive(report, timeoutMs, screenshot, body) {
  const started = Date.now();
  report.steps = [];
  const step = (name) => report.steps.push({ name, ms: Date.now() - started });
  let browser;
  try {
    browser = await openBrowser(report, timeoutMs);
    step('browser started');
    await body(browser.page, step);
    report.ok = true;
  } catch (err) {
    report.ok = false;
    report.error = String(err && err.stack ? err.stack : err);
    const page = browser?.page;
    if (page) {
      report.html = await page
        .content()
        .then((html) => html.slice(0, 20000))
        .catch(() => null);
      await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    }
  } finally {
    await browser?.close();
  }
  report.totalMs = Date.now() - started;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}
