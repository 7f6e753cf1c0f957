// Drives the dashboard's live parts in Debian's Chromium (run by
// tests/browser/test_dashboard_live.py). Input: one JSON argument
//   {"url", "projectId", "token", "screenshotDir", "timeoutMs", "bellWaitingFile",
//    "progressFile": {path, name, mimeType}, "retryFile": {path, name, mimeType}}
// Output: one JSON line.
//
// 1. The bell: the page is live, its panel open; the driver writes `bellWaitingFile` and the
//    test adds an inbox item through the server's inbox service: the count and the list
//    change without a reload.
// 2. A 12 MiB multipart upload whose part 2 and part 3 S3 requests are held until the row's
//    progress bar has shown a new value: the bar's values are sampled from the page.
// 3. A 12 MiB upload cancelled in Uppy while its part 2 is held: the server fails it
//    (`aborted`), the row shows the reason and Retry; Retry uploads the same File as a new
//    upload, which reaches ready.

import { readFile, writeFile } from 'node:fs/promises';

import { drive } from './browser.mjs';

const input = JSON.parse(process.argv[2]);
const report = { bar: [], apiRequests: [] };

const rowFor = (name) => `tr.upload:has(.file-name:text-is(${JSON.stringify(name)}))`;

await drive(report, input.timeoutMs, `${input.screenshotDir}/dashboard-live-error.png`, async (page, step) => {
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.origin === input.url) report.apiRequests.push(`${req.method()} ${url.pathname}`);
  });
  // Part requests to S3 pass a gate: `gates[phase]` decides (held until a promise resolves).
  let gate = async () => {};
  await page.route(
    (url) => url.origin !== input.url && url.searchParams.has('partNumber'),
    async (route) => {
      const url = new URL(route.request().url());
      await gate(Number(url.searchParams.get('partNumber')), url.searchParams.get('uploadId'));
      await route.continue().catch(() => {}); // a cancelled upload's request is gone
    },
  );
  // Every value the progress bars show, per file name, as the page renders them.
  await page.addInitScript(() => {
    window.__bars = {};
    const record = () => {
      for (const row of document.querySelectorAll('tr.upload')) {
        const name = row.querySelector('.file-name')?.textContent;
        const bar = row.querySelector('.progress');
        if (!name || !bar || bar.hidden) continue;
        const value = bar.getAttribute('aria-valuenow');
        if (value === null) continue;
        const seen = (window.__bars[name] ??= []);
        if (seen[seen.length - 1] !== value) seen.push(value);
      }
    };
    new MutationObserver(record).observe(document, { subtree: true, childList: true, attributes: true });
  });

  const url = `${input.url}/?project=${encodeURIComponent(input.projectId)}&token=${encodeURIComponent(input.token)}`;
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('#connection[data-state="connected"]');
  step('page live');

  // 1. The bell, live.
  report.bellBefore = await page.textContent('#bell-count');
  await page.click('#bell');
  await page.waitForSelector('#bell-panel:not([hidden]) p, #bell-panel:not([hidden]) ul');
  await writeFile(input.bellWaitingFile, 'waiting\n'); // the test adds the item now
  await page.waitForFunction((before) => document.querySelector('#bell-count').textContent !== before, report.bellBefore);
  await page.waitForSelector('#bell-panel li');
  report.bellAfter = {
    count: await page.textContent('#bell-count'),
    items: await page.$$eval('#bell-panel li', (items) => items.map((li) => li.textContent)),
    unreadItems: await page.locator('#bell-panel li.unread').count(),
  };
  await page.screenshot({ path: `${input.screenshotDir}/dashboard-bell.png`, fullPage: true });
  await page.click('#bell');
  step('bell live');

  const fileInput = page.locator('#uploader input.uppy-Dashboard-input[type="file"]:not([webkitdirectory])').first();
  const give = async (f) =>
    fileInput.setInputFiles([{ name: f.name, mimeType: f.mimeType, buffer: await readFile(f.path) }]);
  const barValues = (name) => page.evaluate((n) => window.__bars[n] ?? [], name);
  const waitForNewBarValue = async (name, count) => {
    await page.waitForFunction(([n, c]) => (window.__bars[n] ?? []).length > c, [name, count]);
  };

  // 2. Progress: parts 2 and 3 wait until the bar has shown one more value.
  const progressName = input.progressFile.name;
  gate = async (part) => {
    if (part >= 2) await waitForNewBarValue(progressName, part - 2);
  };
  await give(input.progressFile);
  await page.waitForSelector(`${rowFor(progressName)}[data-status="ready"]`);
  report.bar = await barValues(progressName);
  step('progress upload ready');
  await page.click('#uploader button.uppy-StatusBar-actionBtn--done'); // back to the drop area

  // 3. Cancel, fail, retry.
  const retryName = input.retryFile.name;
  let cancelled = null;
  gate = async (part) => {
    if (part >= 2 && cancelled === null) {
      cancelled = new Promise(() => {}); // held for good: the upload is cancelled meanwhile
      await cancelled;
    }
  };
  await give(input.retryFile);
  await page.waitForSelector(`${rowFor(retryName)} .progress:not([hidden])`);
  const cancel = page.locator('#uploader button.uppy-StatusBar-actionCircleBtn[data-cy="cancel"]');
  await cancel.click();
  step('cancelled in uppy');
  const failed = page.locator(`${rowFor(retryName)}[data-status="failed"]`);
  await failed.waitFor();
  await failed.locator('button.action-retry:not([hidden])').waitFor();
  report.failedRow = {
    id: await failed.getAttribute('data-upload-id'),
    badge: await failed.locator('.badge').textContent(),
    reason: await failed.locator('.reason').textContent(),
  };
  await page.screenshot({ path: `${input.screenshotDir}/dashboard-failed-retry.png`, fullPage: true });
  gate = async () => {};
  await failed.locator('button.action-retry').click();
  step('retry clicked');
  await page.waitForFunction(
    ([name, failedId]) =>
      [...document.querySelectorAll('tr.upload')].some(
        (r) => r.querySelector('.file-name')?.textContent === name && r.dataset.uploadId !== failedId && r.dataset.status === 'ready',
      ),
    [retryName, report.failedRow.id],
  );
  report.retryRows = await page.$$eval(rowFor(retryName), (rows) =>
    rows.map((r) => ({ id: r.dataset.uploadId, status: r.dataset.status, retryShown: !r.querySelector('.action-retry').hidden })),
  );
  await page.screenshot({ path: `${input.screenshotDir}/dashboard-live.png`, fullPage: true });
  step('retry ready');
});
