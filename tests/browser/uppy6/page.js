// A bare page with stock @uppy/core + @uppy/aws-s3 6.3.1, as a web team would write it
// from Uppy's docs (run by tests/browser/test_uppy6.py through uppy6.mjs). Served under the
// API's own origin. `window.uploadWith({mode, token, projectId})` uploads the files of
// `#files` and resolves with what Uppy reported.
//
//   mode "sign":      signRequest → POST /s3/sign with the bearer token; Uppy talks to S3.
//   mode "companion": companionEndpoint = this origin, after POST /api/v1/session set the
//                     cookie (Uppy 6 sends no headers).

import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';

const MIB = 1024 * 1024;
const PART = 5 * MIB; // the server's part size below 50 GB: max(5 MiB, ceil(size / 10000))

function signer(token, projectId, files) {
  // Uppy's request carries the key Uppy chose (generateObjectKey below): the file behind it.
  return async (request) => {
    const body = { ...request };
    const file = files.get(request.key);
    if (file && request.uploadId === undefined) {
      body.metadata = { projectId, name: file.name, size: file.size, type: file.type };
    }
    const res = await fetch('/s3/sign', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`sign failed: ${res.status} ${await res.text()}`);
    return res.json();
  };
}

window.uploadWith = async ({ mode, token, projectId }) => {
  const report = { progress: {}, success: {}, errors: [], signed: 0 };
  const files = new Map();
  const uppy = new Uppy({ autoProceed: false });
  const shared = {
    shouldUseMultipart: (file) => file.size > PART,
    getChunkSize: () => PART,
  };
  if (mode === 'sign') {
    uppy.use(AwsS3, {
      ...shared,
      signRequest: signer(token, projectId, files),
      generateObjectKey: (file) => {
        const key = `${crypto.randomUUID()}-${file.name}`;
        files.set(key, file);
        return key;
      },
    });
  } else {
    const res = await fetch('/api/v1/session', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    if (res.status !== 201) throw new Error(`session: ${res.status}`);
    report.cookieVisibleToScript = document.cookie.includes('bp_session');
    uppy.use(AwsS3, { ...shared, companionEndpoint: window.location.origin });
  }
  uppy.on('upload-progress', (file, progress) => {
    (report.progress[file.name] ??= []).push(progress.bytesUploaded);
  });
  uppy.on('upload-success', (file, response) => {
    report.success[file.name] = { key: response.body.key, location: response.body.location ?? response.uploadURL };
  });
  uppy.on('upload-error', (file, err) => report.errors.push(`${file?.name}: ${err?.message ?? err}`));
  for (const f of document.querySelector('#files').files) {
    uppy.addFile({ name: f.name, type: f.type, data: f, meta: { projectId, size: f.size } });
  }
  const result = await uppy.upload();
  report.successful = (result?.successful ?? []).map((f) => f.name);
  report.failed = (result?.failed ?? []).map((f) => `${f.name}: ${f.error}`);
  uppy.destroy();
  return report;
};
