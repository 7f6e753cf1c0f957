// A bare page with stock @uppy/core 5.2.0 + @uppy/aws-s3 5.1.0 in Companion mode as Uppy 5's
// docs show it: `endpoint` (this origin, our Companion-compatible /s3 routes) + `headers`
// (the bearer token). Run by tests/browser/test_uppy5.py through uppy6.mjs (one driver for
// both majors). `window.uploadWith({token, projectId})` uploads the files of `#files` and
// resolves with what Uppy reported (same report shape as tests/browser/uppy6/page.js).

import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';

const MIB = 1024 * 1024;
const PART = 5 * MIB;

window.uploadWith = async ({ token, projectId }) => {
  const report = { progress: {}, success: {}, errors: [] };
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    endpoint: window.location.origin,
    headers: { authorization: `Bearer ${token}` },
    shouldUseMultipart: (file) => file.size > PART,
    getChunkSize: () => PART,
  });
  uppy.on('upload-progress', (file, progress) => {
    (report.progress[file.name] ??= []).push(progress.bytesUploaded);
  });
  uppy.on('upload-success', (file, response) => {
    report.success[file.name] = { key: response.body?.key, location: response.body?.location ?? response.uploadURL };
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
