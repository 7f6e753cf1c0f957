// The dashboard's sign-in and access paths in Debian's Chromium (run by
// tests/browser/test_dashboard.py). Input: one JSON argument; output: one JSON line.
//
//   {"url", "timeoutMs", "screenshot", "member": {"projectId", "token"},
//    "outsideProject", "investorToken", "expiredToken"}

import { drive } from './browser.mjs';

const input = JSON.parse(process.argv[2]);
const report = {};

async function signIn(page, projectId, token) {
  await page.fill('#login-project', projectId);
  await page.fill('#login-token', token);
  await page.click('#login button[type="submit"]');
}

const visibleText = (page, selector) =>
  page.locator(selector).evaluate((el) => (el.hidden ? null : el.textContent));

await drive(report, input.timeoutMs, input.screenshot, async (page, step) => {
  // No session: the Spanish sign-in form.
  await page.goto(`${input.url}/`, { waitUntil: 'load' });
  await page.waitForSelector('#login');
  report.loginHeading = await page.textContent('#login h1');
  await page.screenshot({ path: input.screenshot, fullPage: true });

  // Bad input is explained in the form.
  await signIn(page, 'obra-123', input.member.token);
  report.badProject = await visibleText(page, '#login .form-error');
  await signIn(page, input.member.projectId, 'not a token');
  report.badToken = await visibleText(page, '#login .form-error');
  step('form validation');

  // A project the user is not a member of: the API's 403, in Spanish.
  await signIn(page, input.outsideProject, input.member.token);
  await page.waitForSelector('#banner:not([hidden])');
  report.outsider = await page.textContent('#banner');
  step('outsider refused');

  // Sign out, then in as an investor: read-only, no uploader, still live.
  await page.click('header button.link');
  await page.waitForSelector('#login');
  await signIn(page, input.member.projectId, input.investorToken);
  await page.waitForSelector('#connection[data-state="connected"]');
  report.investor = {
    uploader: await page.locator('#uploader').count(),
    note: await page.textContent('section.card p.muted'),
    empty: await visibleText(page, '.empty'),
  };
  step('investor read-only');

  // An expired token (from the address bar) leads back to the form, with the reason.
  await page.goto(`${input.url}/dashboard?project=${input.member.projectId}&token=${input.expiredToken}`);
  await page.waitForSelector('#login .form-error:not([hidden])');
  report.expired = await page.textContent('#login .form-error');
  report.addressBar = page.url();
  step('expired token');

  // English on request.
  await page.goto(`${input.url}/?lang=en`);
  await page.waitForSelector('#login');
  report.english = await page.textContent('#login h1');
});
