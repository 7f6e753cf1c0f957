import assert from 'node:assert/strict';
import { test } from 'node:test';

import { UploadList, progressPercent, supersedes, uploadIdFromKey } from '../src/model.js';
import { canTransition } from '../src/status.js';

const P = '11111111-1111-4111-8111-111111111111';
const U = '22222222-2222-4222-8222-222222222222';

function doc(fields = {}) {
  return {
    id: U,
    project_id: P,
    file_name: 'obra.jpg',
    status: 'pending',
    version: 1,
    size: 1000,
    bytes_done: 0,
    parts_done: 0,
    derivatives: [],
    created_at: '2025-01-01T10:00:00Z',
    ...fields,
  };
}

function event(type, status, data = {}, fields = {}) {
  return { version: 1, type, upload_id: U, project_id: P, status, data, ...fields };
}

test('status machine mirrors core.status.can_transition', () => {
  assert.equal(canTransition('pending', 'uploading'), true);
  assert.equal(canTransition('processing', 'scanning'), false);
  assert.equal(canTransition('ready', 'failed'), false);
  assert.equal(canTransition('failed', 'quarantined'), true);
  assert.equal(canTransition('failed', 'ready'), false);
  assert.equal(canTransition('scanning', 'quarantined'), true);
  assert.equal(canTransition('ready', 'ready'), false);
  assert.equal(canTransition('nonsense', 'ready'), false);
});

test('a newer document replaces an older one, never the reverse', () => {
  const list = new UploadList(P);
  assert.equal(list.upsert(doc({ status: 'processing', version: 5 })), true);
  assert.equal(list.upsert(doc({ status: 'uploading', version: 3 })), false);
  assert.equal(list.get(U).status, 'processing');
  assert.equal(list.upsert(doc({ status: 'ready', version: 6, derivatives: ['thumb-200'] })), true);
  // A stale document with a higher version but a backwards status is still refused.
  assert.equal(list.upsert(doc({ status: 'scanning', version: 9 })), false);
  assert.deepEqual(list.get(U).derivatives, ['thumb-200']);
});

test('same version fills in derivatives', () => {
  assert.equal(supersedes(doc({ status: 'ready', version: 4 }), doc({ status: 'ready', version: 4, derivatives: ['thumb-200'] })), true);
  assert.equal(supersedes(doc({ status: 'ready', version: 4, derivatives: ['thumb-200'] }), doc({ status: 'ready', version: 4 })), false);
});

test('documents and events of another project are ignored', () => {
  const list = new UploadList(P);
  assert.equal(list.upsert(doc({ project_id: '33333333-3333-4333-8333-333333333333' })), false);
  list.upsert(doc());
  const other = event('upload.completed', 'uploaded', {}, { project_id: '33333333-3333-4333-8333-333333333333' });
  assert.deepEqual(list.apply(other), { changed: false, fetch: null });
});

test('events move status forward, out of order and duplicated', () => {
  const list = new UploadList(P);
  list.upsert(doc({ status: 'uploading' }));
  assert.equal(list.apply(event('processing.completed', 'processing')).changed, true);
  assert.equal(list.apply(event('upload.completed', 'uploaded')).changed, false); // late
  assert.equal(list.apply(event('processing.completed', 'processing')).changed, false); // duplicate
  assert.equal(list.get(U).status, 'processing');
  const failed = list.apply(event('upload.failed', 'failed', { reason: 'corrupt' }));
  assert.equal(failed.changed, true);
  assert.equal(list.get(U).reason, 'corrupt');
  assert.equal(list.apply(event('upload.failed', 'quarantined', { reason: 'infected' })).changed, true);
  assert.equal(list.get(U).status, 'quarantined');
  assert.equal(list.get(U).reason, 'infected');
});

test('progress only grows', () => {
  const list = new UploadList(P);
  list.upsert(doc({ status: 'uploading', bytes_done: 100 }));
  assert.equal(list.apply(event('upload.progress', 'uploading', { bytes_done: 600, parts_done: 1 })).changed, true);
  assert.equal(list.apply(event('upload.progress', 'uploading', { bytes_done: 300 })).changed, false);
  assert.equal(list.get(U).bytes_done, 600);
  assert.equal(progressPercent(list.get(U)), 60);
});

test('an unknown upload asks for its document; ready without derivatives too', () => {
  const list = new UploadList(P);
  assert.deepEqual(list.apply(event('upload.completed', 'uploaded')), { changed: false, fetch: U });
  list.upsert(doc({ status: 'processing' }));
  assert.deepEqual(list.apply(event('processing.completed', 'ready')), { changed: true, fetch: U });
});

test('a publication carrying the upload document is applied whole', () => {
  const list = new UploadList(P);
  const result = list.apply({
    ...event('processing.completed', 'ready'),
    upload: doc({ status: 'ready', version: 7, derivatives: ['thumb-200', 'thumb-800'] }),
  });
  assert.deepEqual(result, { changed: true, fetch: null });
  assert.deepEqual(list.get(U).derivatives, ['thumb-200', 'thumb-800']);
});

test('garbage publications are ignored', () => {
  const list = new UploadList(P);
  for (const junk of [null, 42, 'x', {}, { upload_id: 5 }, { upload: { id: U, status: 'bogus' } }]) {
    assert.deepEqual(list.apply(junk), { changed: false, fetch: null });
  }
  assert.equal(list.size, 0);
});

test('newest first', () => {
  const list = new UploadList(P);
  list.upsert(doc({ id: 'a', created_at: '2025-01-01T10:00:00Z' }));
  list.upsert(doc({ id: 'b', created_at: '2025-01-02T10:00:00Z' }));
  assert.deepEqual(list.sorted().map((d) => d.id), ['b', 'a']);
});

test('upload id from an S3 key or URL', () => {
  const key = `tenant-${P}/project-${P}/uploads/${U}/original/obra.jpg`;
  assert.equal(uploadIdFromKey(key), U);
  assert.equal(uploadIdFromKey(`http://127.0.0.1:5000/bucket/${key}`), U);
  assert.equal(uploadIdFromKey('tenant-x/derived/thumb-200.jpg'), null);
  assert.equal(uploadIdFromKey(undefined), null);
});

test('progress percent only while uploading', () => {
  assert.equal(progressPercent(doc({ status: 'uploading', size: 0 })), null);
  assert.equal(progressPercent(doc({ status: 'ready', bytes_done: 1000 })), null);
  assert.equal(progressPercent(doc({ status: 'uploading', bytes_done: 5000 })), 100);
});

test('a deleted upload leaves the list and a late publication cannot bring it back', () => {
  assert.equal(canTransition('ready', 'deleted'), true);
  assert.equal(canTransition('quarantined', 'deleted'), true);
  assert.equal(canTransition('deleted', 'ready'), false);
  const list = new UploadList(P);
  list.upsert(doc({ status: 'ready', version: 6 }));
  assert.equal(list.size, 1);
  const gone = list.apply(event('upload.deleted', 'deleted', {}, { upload: doc({ status: 'deleted', version: 7 }) }));
  assert.equal(gone.changed, true);
  assert.equal(list.size, 0);
  assert.deepEqual(list.sorted(), []);
  // a late "ready" (out of order, at least once) does not resurrect it
  assert.equal(list.apply(event('processing.completed', 'ready', {}, { upload: doc({ status: 'ready', version: 6 }) })).changed, false);
  assert.equal(list.size, 0);
});
