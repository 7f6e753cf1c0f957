// The page's list of uploads: documents from the HTTP API and publications from the hub,
// merged so that nothing ever moves backwards. Pure: no DOM, no network.

import { canTransition, isKnownStatus } from './status.js';

const UPLOAD_ID_IN_KEY = /\/uploads\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/original\//;

/** The upload id inside an S3 key of our layout (core/keys.py), or null. */
export function uploadIdFromKey(key) {
  const match = typeof key === 'string' ? UPLOAD_ID_IN_KEY.exec(key) : null;
  return match ? match[1] : null;
}

function isDocument(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.id === 'string' &&
    typeof value.status === 'string' &&
    isKnownStatus(value.status)
  );
}

/** Whether `incoming` (a full document) should replace `current`. */
export function supersedes(current, incoming) {
  if (!current) return true;
  if (current.status !== incoming.status) return canTransition(current.status, incoming.status);
  const cv = Number(current.version ?? 0);
  const iv = Number(incoming.version ?? 0);
  if (iv !== cv) return iv > cv;
  // Same version: the derivative list may have been filled in since (it is not versioned).
  return (incoming.derivatives ?? []).length > (current.derivatives ?? []).length;
}

export class UploadList {
  constructor(projectId) {
    this.projectId = projectId;
    this.byId = new Map();
  }

  /** Uploads shown (a deleted one is kept, so a late publication cannot bring it back). */
  get size() {
    return this.sorted().length;
  }

  get(id) {
    return this.byId.get(id);
  }

  /** Merge a document from the API. Returns true when the row changed. */
  upsert(doc) {
    if (!isDocument(doc)) return false;
    if (this.projectId && doc.project_id && doc.project_id !== this.projectId) return false;
    const current = this.byId.get(doc.id);
    if (!supersedes(current, doc)) return false;
    this.byId.set(doc.id, { ...doc, derivatives: [...(doc.derivatives ?? [])] });
    return true;
  }

  /**
   * Apply a publication of the project channel: a v1 event (core/events.py), possibly
   * carrying the upload's current document as `upload`. Returns
   * `{changed, fetch}`: `fetch` is an upload id whose full document the page should load
   * (an upload it has not seen yet, or one that became ready without its derivative list).
   */
  apply(publication) {
    const none = { changed: false, fetch: null };
    if (publication === null || typeof publication !== 'object') return none;
    if (isDocument(publication.upload)) {
      const changed = this.upsert(publication.upload);
      const doc = this.byId.get(publication.upload.id);
      const fetch = doc && doc.status === 'ready' && doc.derivatives.length === 0 ? doc.id : null;
      return { changed, fetch };
    }
    if (isDocument(publication)) {
      return { changed: this.upsert(publication), fetch: null };
    }
    const id = publication.upload_id;
    if (typeof id !== 'string') return none;
    if (this.projectId && publication.project_id && publication.project_id !== this.projectId) return none;
    const current = this.byId.get(id);
    if (!current) return { changed: false, fetch: id };
    const next = { ...current };
    let changed = false;
    const status = publication.status;
    const data = publication.data && typeof publication.data === 'object' ? publication.data : {};
    if (isKnownStatus(status) && canTransition(current.status, status)) {
      next.status = status;
      next.reason = typeof data.reason === 'string' ? data.reason : null;
      changed = true;
    }
    if (publication.type === 'upload.progress' && next.status === status) {
      for (const field of ['bytes_done', 'parts_done']) {
        const value = data[field];
        if (Number.isInteger(value) && value > (next[field] ?? 0)) {
          next[field] = value;
          changed = true;
        }
      }
      if (Number.isInteger(data.size) && !next.size) {
        next.size = data.size;
        changed = true;
      }
    }
    if (changed) this.byId.set(id, next);
    const fetch = next.status === 'ready' && (next.derivatives ?? []).length === 0 ? id : null;
    return { changed, fetch };
  }

  /** Newest first, as the API lists them; deleted uploads leave the list. */
  sorted() {
    return [...this.byId.values()].filter((doc) => doc.status !== 'deleted').sort((a, b) => {
      const at = a.created_at ?? '';
      const bt = b.created_at ?? '';
      if (at !== bt) return at < bt ? 1 : -1;
      return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
    });
  }
}

/** Percentage of bytes received, or null when unknown. */
export function progressPercent(doc) {
  if (doc.status !== 'pending' && doc.status !== 'uploading') return null;
  const size = Number(doc.size);
  const done = Number(doc.bytes_done ?? 0);
  if (!Number.isFinite(size) || size <= 0) return null;
  return Math.max(0, Math.min(100, Math.floor((done / size) * 100)));
}
