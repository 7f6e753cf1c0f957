// Stock Uppy 6.3.1 (or 5, "page": "/uppy5/index.html") in Debian's Chromium (run by
// tests/browser/test_uppy6.py and test_uppy5.py). Input: one JSON argument {"url", "mode",
// "token", "projectId", "files": [{path, name, mimeType}], "timeoutMs", "screenshot", "page"?};
// output: one JSON line with what Uppy reported.

import { readFile } from 'node:fs/promises';

import { drive } from './browser.mjs';

const input = JSON.parse(process.argv[2]);
const report = { s3Requests: [], apiRequests: [] };

await drive(report, input.timeoutMs, input.screenshot, async (page, step) => {
  page.on('request', (req) => {
    const url = new URL(req.url());
    const entry = `${req.method()} ${url.pathname}${url.search.includes('uploads') ? '?uploads' : ''}`;
    if (url.origin === input.url) report.apiRequests.push(entry);
    else report.s3Requests.push(`${req.method()} ${url.origin}`);
  });
  await page.goto(`${input.url}${input.page ?? '/uppy6/index.html'}`, { waitUntil: 'load' });
  await page.waitForFunction(() => typeof window.uploadWith === 'function');
  const files = [];
  for (const f of input.files) files.push({ name: f.name, mimeType: f.mimeType, buffer: await readFile(f.path) });
  await page.locator('#files').setInputFiles(files);
  step('page loaded');
  report.uppy = await page.evaluate(
    (args) => window.uploadWith(args),
    { mode: input.mode, token: input.token, projectId: input.projectId },
  );
  step('uppy finished');
  await page.screenshot({ path: input.screenshot, fullPage: true });
});
