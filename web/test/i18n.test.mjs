import assert from 'node:assert/strict';
import { test } from 'node:test';

import CATALOGS from '../src/catalogs.js';
import { I18n, LANGUAGES, PAGE_TEXTS, REASON_KEYS, STATUS_KEYS, pickLanguage } from '../src/i18n.js';
import { REASONS, STATUSES } from '../src/status.js';

const FILES = ['{count} file', '{count} files'];

test('Spanish by default', () => {
  assert.deepEqual(LANGUAGES, ['es', 'pt-BR', 'en']);
  assert.equal(pickLanguage(undefined), 'es');
  assert.equal(pickLanguage('fr'), 'es');
  assert.equal(pickLanguage('es-MX'), 'es');
  assert.equal(pickLanguage('pt'), 'pt-BR');
  assert.equal(pickLanguage('PT-br'), 'pt-BR');
  assert.equal(pickLanguage('en-US'), 'en');
  const t = new I18n();
  assert.equal(t.status('ready'), 'Lista');
  assert.equal(t.status('failed'), 'Fallida');
  assert.equal(t._('Sign in to the uploads dashboard'), 'Ingresar al panel de cargas');
  assert.equal(t._(PAGE_TEXTS.noscript), 'Este panel necesita JavaScript.');
});

test('plurals follow CLDR, from the compiled catalogs', () => {
  const es = new I18n('es');
  const pt = new I18n('pt-BR');
  const en = new I18n('en');
  assert.equal(es.ngettext(...FILES, 1), '1 archivo');
  assert.equal(es.ngettext(...FILES, 2), '2 archivos');
  assert.equal(es.ngettext(...FILES, 0), '0 archivos');
  assert.equal(es.ngettext(...FILES, 12345), '12.345 archivos');
  assert.equal(es.ngettext(...FILES, 1_000_000), '1.000.000 de archivos'); // CLDR "many"
  assert.equal(pt.ngettext(...FILES, 1), '1 arquivo');
  assert.equal(pt.ngettext(...FILES, 2), '2 arquivos');
  assert.equal(pt.ngettext(...FILES, 0), '0 arquivo'); // CLDR pt: i = 0,1 is "one"
  assert.equal(en.ngettext(...FILES, 1), '1 file');
  assert.equal(en.ngettext(...FILES, 0), '0 files');
  assert.equal(en.ngettext(...FILES, 12345), '12,345 files');
});

test('the catalogs hold a form for every category the browser can answer', () => {
  for (const language of LANGUAGES) {
    const compiled = CATALOGS.locales[language];
    const browser = new Intl.PluralRules(language).resolvedOptions().pluralCategories;
    assert.deepEqual([...compiled.plural_categories].sort(), [...browser].sort(), language);
    for (const [id, text] of Object.entries(compiled.messages)) {
      if (typeof text === 'object') assert.deepEqual(Object.keys(text).sort(), [...browser].sort(), `${language}: ${id}`);
    }
  }
});

test('every status and reason has its text, translated', () => {
  assert.deepEqual(STATUS_KEYS, STATUSES);
  assert.deepEqual([...REASON_KEYS].sort(), [...REASONS].sort());
  for (const language of ['es', 'pt-BR']) {
    const t = new I18n(language);
    const en = new I18n('en');
    for (const status of STATUSES) assert.notEqual(t.status(status), en.status(status), `${language}: ${status}`);
    for (const reason of REASONS) assert.notEqual(t.reason(reason), en.reason(reason), `${language}: ${reason}`);
  }
});

test('a text missing from a catalog falls back to the English source', () => {
  const t = new I18n('es', { locales: { es: { plural_categories: ['one', 'many', 'other'], messages: {} } } });
  assert.equal(t._('Could not delete: {message}', { message: 'x' }), 'Could not delete: x');
  assert.equal(t.ngettext(...FILES, 1), '1 file');
  assert.equal(t.ngettext(...FILES, 3), '3 files');
});

test('unknown reasons are shown by code', () => {
  assert.equal(new I18n('es').reason('new_code'), 'Motivo: new_code');
  assert.equal(new I18n('en').reason('new_code'), 'Reason: new_code');
  assert.equal(new I18n('es').reason(null), '');
});

test('sizes, percentages and dates', () => {
  const t = new I18n('es');
  assert.equal(t.bytes(512), '512 B');
  assert.equal(t.bytes(1536), '1,5 KB');
  assert.equal(t.bytes(undefined), '');
  assert.equal(t._('{percent} received', { percent: t.percent(42) }), '42\u00a0% recibido');
  const en = new I18n('en');
  assert.equal(en._('{percent} received', { percent: en.percent(42) }), '42% received');
  assert.equal(t.date('not a date'), '');
  assert.match(t.date('2025-03-04T10:00:00Z'), /2025/);
});
