// Drag-and-drop upload with stock Uppy 6.3: Dashboard + AwsS3 in `signRequest` mode. The sign
// function asks POST /s3/sign (bearer token) to presign each S3 request, adding the file's
// {projectId, name, size, type} to the first one; Uppy then talks to S3 itself (wire format:
// shared/wire/uppy-aws-s3-6.md). The server's key names the upload, so the page knows each
// file's upload id from the first answer on.

import AwsS3 from '@uppy/aws-s3';
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import en_US from '@uppy/locales/lib/en_US.js';
import es_ES from '@uppy/locales/lib/es_ES.js';
import pt_BR from '@uppy/locales/lib/pt_BR.js';

import { uploadIdFromKey } from './model.js';
import { ProgressReporter } from './progress.js';

const UPPY_LOCALES = { es: es_ES, en: en_US, 'pt-BR': pt_BR };
const MIB = 1024 * 1024;
// The server's part size below 50 GB is max(5 MiB, ceil(size / 10000)): files over one part
// go multipart.
const PART = 5 * MIB;
const partSize = (file) => Math.max(PART, Math.ceil((file.size ?? 0) / 10_000));
// Progress reports to the server (other viewers see them live): at most one per file per
// interval, and the last one always.
export const PROGRESS_REPORT_MS = 1000;

/**
 * Callbacks, each with the server's upload id:
 * - `onStarted(uploadId, file)`: the server created the upload for `file` (a File);
 * - `onProgress(uploadId, bytesUploaded, bytesTotal)`: Uppy's `upload-progress`;
 * - `onUploaded(uploadId)`: the bytes are in S3 (the server then scans and processes them);
 * - `onError(uploadId, error)`: Uppy gave up on the file.
 */
export function createUploader({ target, origin, token, projectId, i18n, callbacks = {} }) {
  const uppy = new Uppy({
    id: 'buildpeer',
    autoProceed: true,
    locale: UPPY_LOCALES[i18n.language] ?? es_ES,
    meta: { projectId },
  });
  const byKey = new Map(); // the key Uppy chose → its Uppy file
  const uploadIds = new Map(); // Uppy file id → server upload id

  const sign = async (request) => {
    const body = { ...request };
    const file = byKey.get(request.key);
    if (file && request.uploadId === undefined) {
      body.metadata = { projectId, name: file.name, size: file.size, type: file.type || undefined };
    }
    const response = await fetch(new URL('/s3/sign', origin), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const message = answer?.error?.message ?? `HTTP ${response.status}`;
      throw new Error(message);
    }
    const serverKey = answer?.key ?? answer?.fields?.key;
    const uploadId = uploadIdFromKey(serverKey);
    if (file && uploadId && !uploadIds.has(file.id)) {
      uploadIds.set(file.id, uploadId);
      callbacks.onStarted?.(uploadId, file.data);
    }
    return answer;
  };

  const reporter = new ProgressReporter({
    intervalMs: PROGRESS_REPORT_MS,
    send: (uploadId, bytes) => {
      fetch(new URL(`/api/v1/uploads/${encodeURIComponent(uploadId)}/progress`, origin), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ bytes_done: bytes }),
      }).catch(() => {}); // best effort: the server's own events carry the outcome
    },
  });

  uppy.use(Dashboard, {
    target,
    inline: true,
    width: '100%',
    height: 280,
    proudlyDisplayPoweredByUppy: false,
    hideProgressDetails: false,
    note: i18n._('Photos (JPEG, PNG, HEIC) and documents (PDF). They are scanned before they are published.'),
    doneButtonHandler: () => uppy.clear(),
  });
  uppy.use(AwsS3, {
    signRequest: sign,
    shouldUseMultipart: (file) => (file.size ?? 0) > partSize(file),
    getChunkSize: partSize,
    generateObjectKey: (file) => {
      const key = `${crypto.randomUUID()}-${file.name}`;
      byKey.set(key, file);
      return key;
    },
  });
  uppy.on('upload-progress', (file, progress) => {
    const uploadId = file && uploadIds.get(file.id);
    if (!uploadId) return;
    const total = progress.bytesTotal ?? file.size;
    callbacks.onProgress?.(uploadId, progress.bytesUploaded, total);
    // The last bytes are reported by S3's ObjectCreated event (the upload moves on then).
    reporter.update(uploadId, progress.bytesUploaded, progress.bytesUploaded >= total);
  });
  uppy.on('upload-success', (file, response) => {
    const uploadId = uploadIds.get(file.id) ?? uploadIdFromKey(response?.body?.key);
    if (uploadId) callbacks.onUploaded?.(uploadId);
  });
  uppy.on('upload-error', (file, error) => {
    const uploadId = file && uploadIds.get(file.id);
    if (!uploadId) return;
    reporter.forget(uploadId);
    callbacks.onError?.(uploadId, error);
  });
  uppy.on('file-removed', (file) => {
    const uploadId = file && uploadIds.get(file.id);
    if (uploadId) reporter.forget(uploadId);
  });

  return {
    uppy,
    /** Stops Uppy (uploads in flight are cancelled) and every pending progress report. */
    close() {
      reporter.stop();
      uppy.destroy();
    },
    /** Upload `file` (a File kept from an earlier attempt) again, as a new upload. */
    retry(file) {
      for (const existing of uppy.getFiles()) {
        if (existing.data === file) uppy.removeFile(existing.id);
      }
      uppy.addFile({ name: file.name, type: file.type, data: file, source: 'retry' });
    },
  };
}
