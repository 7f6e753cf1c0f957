// The uploads table: one keyed row per upload, updated in place so thumbnails are not
// reloaded on every publication.

import { clear, h } from './dom.js';
import { progressPercent } from './model.js';

// Images have thumbnails; documents have a first-page preview.
const THUMB_KINDS = ['thumb-200', 'preview'];

function extension(name) {
  const dot = typeof name === 'string' ? name.lastIndexOf('.') : -1;
  return dot > 0 ? name.slice(dot + 1, dot + 5).toUpperCase() : '';
}

export class UploadTable {
  /** `thumbnailUrl(uploadId, kind)` resolves to a URL the browser may load in an <img>. */
  constructor(root, i18n, thumbnailUrl, actions = {}) {
    this.i18n = i18n;
    this.thumbnailUrl = thumbnailUrl;
    // {open(doc), remove(doc), canRemove(doc), retry(doc), canRetry(doc)}: the row's buttons
    // (none when absent).
    this.actions = actions;
    this.rows = new Map();
    this.thumbs = new Map(); // upload id → 'loading' | 'loaded' | 'failed'
    this.tbody = h('tbody');
    this.empty = h('p', { class: 'empty', hidden: true }, i18n._('No files in this project yet. Drop photos or documents above to upload them.'));
    this.table = h(
      'table',
      { class: 'uploads', 'aria-live': 'polite' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col', class: 'col-thumb' }, i18n._('Preview')),
          h('th', { scope: 'col' }, i18n._('File')),
          h('th', { scope: 'col', class: 'col-status' }, i18n._('Status')),
          h('th', { scope: 'col', class: 'col-date' }, i18n._('Date')),
          h('th', { scope: 'col', class: 'col-actions' }, i18n._('Actions')),
        ),
      ),
      this.tbody,
    );
    clear(root).append(this.table, this.empty);
  }

  render(docs) {
    const seen = new Set();
    let previous = null;
    for (const doc of docs) {
      seen.add(doc.id);
      let row = this.rows.get(doc.id);
      if (!row) {
        row = this.createRow(doc);
        this.rows.set(doc.id, row);
      }
      this.updateRow(row, doc);
      const wanted = previous ? previous.nextSibling : this.tbody.firstChild;
      if (wanted !== row.tr) this.tbody.insertBefore(row.tr, wanted);
      previous = row.tr;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = docs.length > 0;
    this.table.hidden = docs.length === 0;
  }

  createRow(doc) {
    const row = {
      tr: h('tr', { class: 'upload', dataset: { uploadId: doc.id } }),
      thumb: h('div', { class: 'thumb' }),
      name: h('span', { class: 'file-name' }),
      details: h('span', { class: 'file-details' }),
      badge: h('span', { class: 'badge' }),
      progress: h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }),
      bar: h('div', { class: 'progress-bar' }),
      progressText: h('span', { class: 'progress-text' }),
      reason: h('p', { class: 'reason' }),
      date: h('time', { class: 'date' }),
      open: h('button', { type: 'button', class: 'secondary action-open', hidden: true }, this.i18n._('Open')),
      remove: h('button', { type: 'button', class: 'link action-delete', hidden: true }, this.i18n._('Delete')),
      retry: h('button', { type: 'button', class: 'secondary action-retry', hidden: true }, this.i18n._('Retry')),
      doc: doc,
      status: null,
    };
    row.open.addEventListener('click', () => this.actions.open?.(row.doc));
    row.retry.addEventListener('click', () => this.actions.retry?.(row.doc));
    row.remove.addEventListener('click', () => {
      row.remove.disabled = true;
      Promise.resolve(this.actions.remove?.(row.doc)).finally(() => {
        row.remove.disabled = false;
      });
    });
    row.progress.append(row.bar);
    row.tr.append(
      h('td', { class: 'col-thumb' }, row.thumb),
      h('td', { class: 'col-file' }, row.name, row.details),
      h('td', { class: 'col-status' }, row.badge, row.progress, row.progressText, row.reason),
      h('td', { class: 'col-date' }, row.date),
      h('td', { class: 'col-actions' }, row.open, row.retry, row.remove),
    );
    return row;
  }

  updateRow(row, doc) {
    const t = this.i18n;
    row.doc = doc;
    row.tr.dataset.status = doc.status;
    row.open.hidden = doc.status !== 'ready' || !this.actions.open;
    row.remove.hidden = !this.actions.canRemove?.(doc);
    row.retry.hidden = !this.actions.canRetry?.(doc);
    row.name.textContent = doc.file_name ?? '';
    row.name.title = doc.file_name ?? '';
    const type = doc.sniffed_type || doc.declared_type || '';
    row.details.textContent = [doc.size > 0 ? t.bytes(doc.size) : '', type].filter(Boolean).join(' · ');
    row.badge.textContent = t.status(doc.status);
    row.badge.className = `badge status-${doc.status}`;
    const percent = progressPercent(doc);
    row.progress.hidden = percent === null;
    row.progressText.hidden = percent === null;
    if (percent !== null) {
      row.bar.style.width = `${percent}%`;
      row.progress.setAttribute('aria-valuenow', String(percent));
      row.progressText.textContent = t._('{percent} received', { percent: t.percent(percent) });
    }
    const reason = doc.status === 'failed' || doc.status === 'quarantined' ? t.reason(doc.reason) : '';
    row.reason.textContent = reason;
    row.reason.hidden = !reason;
    row.date.textContent = t.date(doc.created_at);
    if (doc.created_at) row.date.dateTime = doc.created_at;
    this.updateThumb(row, doc);
    row.status = doc.status;
  }

  updateThumb(row, doc) {
    const kind = doc.status === 'ready' ? THUMB_KINDS.find((k) => (doc.derivatives ?? []).includes(k)) : undefined;
    const ready = kind !== undefined;
    const state = this.thumbs.get(doc.id);
    if (!ready) {
      if (!row.thumb.firstChild || state) {
        clear(row.thumb).append(h('span', { class: 'thumb-placeholder' }, extension(doc.file_name) || '·'));
        this.thumbs.delete(doc.id);
      }
      return;
    }
    if (state === 'loading' || state === 'loaded') return;
    this.thumbs.set(doc.id, 'loading');
    this.thumbnailUrl(doc.id, kind).then(
      (url) => {
        const img = h('img', { class: 'thumb-img', width: '64', height: '64', decoding: 'async' });
        img.alt = doc.file_name ?? '';
        img.addEventListener('load', () => this.thumbs.set(doc.id, 'loaded'));
        img.addEventListener('error', () => this.thumbs.set(doc.id, 'failed'));
        img.src = url;
        clear(row.thumb).append(img);
      },
      () => this.thumbs.set(doc.id, 'failed'),
    );
  }
}
