import assert from 'node:assert/strict';
import { test } from 'node:test';

import { I18n, MESSAGES, pickLanguage } from '../src/i18n.js';
import { REASONS, STATUSES } from '../src/status.js';

test('Spanish by default', () => {
  assert.equal(pickLanguage(undefined), 'es');
  assert.equal(pickLanguage('fr'), 'es');
  assert.equal(pickLanguage('es-MX'), 'es');
  assert.equal(pickLanguage('pt'), 'pt-BR');
  assert.equal(pickLanguage('PT-br'), 'pt-BR');
  assert.equal(pickLanguage('en-US'), 'en');
  const t = new I18n();
  assert.equal(t.status('ready'), 'Lista');
  assert.equal(t.status('failed'), 'Fallida');
  assert.equal(t.t('received', { percent: 42 }), '42 % recibido');
});

test('every language has every key, status and reason', () => {
  const keys = Object.keys(MESSAGES.es).sort();
  for (const [language, messages] of Object.entries(MESSAGES)) {
    assert.deepEqual(Object.keys(messages).sort(), keys, language);
    assert.deepEqual(Object.keys(messages.status).sort(), [...STATUSES].sort(), language);
    assert.deepEqual(Object.keys(messages.reason).sort(), [...REASONS].sort(), language);
  }
});

test('unknown reasons are shown by code', () => {
  assert.equal(new I18n('es').reason('new_code'), 'Motivo: new_code');
  assert.equal(new I18n('es').reason(null), '');
});

test('sizes and dates', () => {
  const t = new I18n('es');
  assert.equal(t.bytes(512), '512 B');
  assert.equal(t.bytes(1536), '1,5 KB');
  assert.equal(t.bytes(undefined), '');
  assert.equal(t.date('not a date'), '');
  assert.match(t.date('2025-03-04T10:00:00Z'), /2025/);
});
