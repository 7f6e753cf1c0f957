// Drives the live dashboard in Debian's Chromium with playwright-core (run by
// tests/browser/test_dashboard.py). Input: one JSON argument; output: one JSON line.
//
//   {"url", "projectId", "token", "screenshot", "timeoutMs",
//    "files": [{"path", "name", "mimeType", "expect": "ready" | "failed"}]}
//
// Loads the page, gives the files to the Uppy Dashboard's file input, waits until each
// row reaches its expected status (ready: with its thumbnail loaded; failed: with its
// reason shown), saves a screenshot and reports what it saw (statuses in order, rows,
// thumbnails, publications received, console errors).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { drive } from './browser.mjs';

const input = JSON.parse(process.argv[2]);
const report = { statuses: {}, rows: {}, pushes: [] };

await drive(report, input.timeoutMs, input.screenshot, async (page, step) => {
  // The page's own API calls (method + path): the uploader signs through POST /s3/sign.
  report.apiRequests = [];
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.origin === input.url) report.apiRequests.push(`${req.method()} ${url.pathname}`);
  });
  // Publications received over the page's WebSocket: {upload_id, type, status}.
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
  await page.waitForSelector('#project-picker:not([disabled])');
  report.projects = await page.$$eval('#project-picker option', (options) =>
    options.map((o) => ({ id: o.value, name: o.textContent, selected: o.selected })),
  );
  report.title = await page.title();
  step('page live');

  const fileInput = page.locator('#uploader input.uppy-Dashboard-input[type="file"]:not([webkitdirectory])').first();
  const files = [];
  for (const f of input.files) files.push({ name: f.name, mimeType: f.mimeType, buffer: await readFile(f.path) });
  await fileInput.setInputFiles(files);
  step('files given to uppy');

  await page.waitForFunction(
    (expected) => {
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
    },
    input.files.map(({ name, expect }) => ({ name, expect })),
  );
  step('rows reached their status');

  report.statuses = await page.evaluate(() => window.__statuses);
  report.rows = await page.evaluate(() => {
    const out = {};
    for (const row of document.querySelectorAll('tr.upload')) {
      const name = row.querySelector('.file-name');
      const img = row.querySelector('img.thumb-img');
      const reason = row.querySelector('.reason');
      out[name.textContent] = {
        id: row.dataset.uploadId,
        status: row.dataset.status,
        badge: row.querySelector('.badge').textContent,
        nameChildElements: name.children.length,
        details: row.querySelector('.file-details').textContent,
        reason: reason.hidden ? null : reason.textContent,
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

  // The inbox bell: the count the page shows, then its list.
  await page.click('#bell');
  await page.waitForSelector('#bell-panel:not([hidden]) ul, #bell-panel:not([hidden]) p');
  report.bell = {
    count: await page.textContent('#bell-count'),
    items: await page.$$eval('#bell-panel li', (items) => items.map((li) => li.textContent)),
  };
  await page.click('#bell');
  step('bell read');

  // Open the ready file (the download route's presigned GET), then delete the failed one.
  if (input.openName) {
    const id = report.rows[input.openName]?.id;
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`tr.upload[data-upload-id="${id}"] button.action-open`),
    ]);
    const bytes = await readFile(await download.path());
    report.downloaded = { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, name: download.suggestedFilename() };
    step('ready file opened');
  }
  if (input.deleteName) {
    const id = report.rows[input.deleteName]?.id;
    await page.click(`tr.upload[data-upload-id="${id}"] button.action-delete`);
    await page.waitForSelector(`tr.upload[data-upload-id="${id}"]`, { state: 'detached' });
    report.afterDelete = {
      count: await page.textContent('.count'),
      connection: await page.textContent('#connection'),
      rows: await page.locator('tr.upload').count(),
    };
    step('failed file deleted');
  }
});
