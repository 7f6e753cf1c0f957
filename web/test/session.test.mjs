import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isUuid, loadSession, tokenClaims, validate } from '../src/session.js';

const P = '11111111-1111-4111-8111-111111111111';
const TOKEN = `x.${Buffer.from(JSON.stringify({ role: 'investor', sub: 'u' })).toString('base64url')}.y`;

function fakeWindow(href, stored = {}) {
  const storage = new Map(Object.entries(stored));
  const win = {
    location: { href },
    history: {
      replaceState(_state, _title, url) {
        win.location.href = new URL(url, href).href;
      },
    },
    sessionStorage: {
      getItem: (k) => (storage.has(k) ? storage.get(k) : null),
      setItem: (k, v) => storage.set(k, v),
      removeItem: (k) => storage.delete(k),
    },
  };
  return win;
}

test('claims are read for display only; junk gives {}', () => {
  assert.equal(tokenClaims(TOKEN).role, 'investor');
  assert.deepEqual(tokenClaims('nonsense'), {});
  assert.deepEqual(tokenClaims('a.%%%.c'), {});
});

test('validation', () => {
  assert.equal(isUuid(P), true);
  assert.equal(validate('nope', TOKEN), 'invalidProject');
  assert.equal(validate(P, ''), 'missingToken');
  assert.equal(validate(P, TOKEN), null);
});

test('the token leaves the address bar and stays in sessionStorage', () => {
  const win = fakeWindow(`http://h/?project=${P}&token=${TOKEN}&lang=es`);
  const session = loadSession(win);
  assert.deepEqual(session, { projectId: P, token: TOKEN });
  assert.equal(win.location.href, `http://h/?project=${P}&lang=es`);
  const again = loadSession(fakeWindow('http://h/'));
  assert.equal(again, null);
  const stored = loadSession(
    fakeWindow('http://h/', { 'buildpeer.dashboard.session': JSON.stringify({ projectId: P, token: TOKEN }) }),
  );
  assert.deepEqual(stored, { projectId: P, token: TOKEN });
});
