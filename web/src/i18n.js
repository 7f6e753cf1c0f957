// Page texts, from the gettext catalogs of the `dashboard` domain (web/locale/*/LC_MESSAGES/
// dashboard.po, extracted from this folder with `pybabel extract -F web/babel.cfg`), compiled
// to catalogs.js by `python -m devstack.catalogs` (README: Translations). Spanish is the
// default; `?lang=pt-BR` or `?lang=en` switch.
//
// Mark a text with `i18n._('English source')`, a plural with
// `i18n.ngettext('{count} file', '{count} files', n)`, and a text kept for later with `N_()`.
// Plurals follow CLDR: the browser's Intl.PluralRules picks the category (one, many, other…)
// and the catalog holds each plural message's forms by category.

import CATALOGS from './catalogs.js';

export const DEFAULT_LANGUAGE = 'es';
export const LANGUAGES = Object.keys(CATALOGS.locales);
export const BRAND = 'BuildPeer';

/** Marks a text for extraction without translating it (it is translated where it is shown). */
export const N_ = (message) => message;

const STATUS_TEXTS = {
  pending: N_('Pending'),
  uploading: N_('Uploading'),
  uploaded: N_('Uploaded'),
  scanning: N_('Scanning'),
  processing: N_('Processing'),
  ready: N_('Ready'),
  failed: N_('Failed'),
  quarantined: N_('Quarantined'),
  deleted: N_('Deleted'),
};

const REASON_TEXTS = {
  aborted: N_('The upload was cancelled.'),
  expired: N_('The upload did not finish in time.'),
  infected: N_('A virus was found: the file is quarantined.'),
  type_mismatch: N_('The content does not match the declared file type.'),
  type_not_allowed: N_('This file type is not allowed.'),
  too_large: N_('The file is larger than the maximum size.'),
  corrupt: N_('The file is damaged or unreadable.'),
  decompression_bomb: N_('The image is too large to process.'),
  encrypted: N_('The document is encrypted and cannot be processed.'),
  processing_failed: N_('Processing the file failed.'),
  processing_timeout: N_('Processing took too long.'),
  size_mismatch: N_("The file's size does not match the size declared."),
  checksum_mismatch: N_('The file arrived corrupted (its checksum does not match).'),
  scan_limit_exceeded: N_("The file exceeds the virus scanner's limits."),
  too_complex: N_('The file is too complex to process.'),
};

// The page's static HTML (src/index.html), filled in by build.mjs in the default language.
export const PAGE_TEXTS = {
  title: N_('Project uploads'),
  noscript: N_('This dashboard needs JavaScript.'),
};

export const STATUS_KEYS = Object.keys(STATUS_TEXTS);
export const REASON_KEYS = Object.keys(REASON_TEXTS);

export function pickLanguage(requested) {
  if (typeof requested !== 'string') return DEFAULT_LANGUAGE;
  const exact = LANGUAGES.find((l) => l.toLowerCase() === requested.toLowerCase());
  if (exact) return exact;
  const base = requested.split('-')[0].toLowerCase();
  if (base === 'pt') return 'pt-BR';
  return LANGUAGES.includes(base) ? base : DEFAULT_LANGUAGE;
}

function fill(template, vars) {
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

export class I18n {
  /** `catalogs`: the compiled catalogs (tests may pass their own). */
  constructor(language, catalogs = CATALOGS) {
    this.language = pickLanguage(language);
    this.messages = catalogs.locales[this.language]?.messages ?? {};
    this.pluralRules = new Intl.PluralRules(this.language);
    this.dateFormat = new Intl.DateTimeFormat(this.language, { dateStyle: 'medium', timeStyle: 'short' });
    this.numberFormat = new Intl.NumberFormat(this.language, { maximumFractionDigits: 1 });
    this.percentFormat = new Intl.NumberFormat(this.language, { style: 'percent', maximumFractionDigits: 0 });
  }

  /** The translation of `message` (the English source when the catalog has none), `{name}`s filled. */
  _(message, vars = {}) {
    const text = this.messages[message];
    return fill(typeof text === 'string' && text ? text : message, vars);
  }

  /** The plural form for `n` (CLDR category of this language); `{count}` is `n` written the language's way. */
  ngettext(singular, plural, n, vars = {}) {
    const forms = this.messages[singular];
    let text = null;
    if (forms && typeof forms === 'object') text = forms[this.pluralRules.select(n)] || forms.other;
    if (!text) text = n === 1 ? singular : plural;
    return fill(text, { count: this.numberFormat.format(n), ...vars });
  }

  status(status) {
    const message = STATUS_TEXTS[status];
    return message ? this._(message) : status;
  }

  reason(code) {
    if (!code) return '';
    const message = REASON_TEXTS[code];
    return message ? this._(message) : this._('Reason: {code}', { code });
  }

  /** `42` → `42 %` (es), `42%` (pt-BR, en). */
  percent(value) {
    return this.percentFormat.format(value / 100);
  }

  bytes(n) {
    const value = Number(n);
    if (!Number.isFinite(value) || value < 0) return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return `${this.numberFormat.format(size)} ${units[unit]}`;
  }

  date(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : this.dateFormat.format(d);
  }
}
