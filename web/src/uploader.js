// Drag-and-drop upload with stock Uppy: Dashboard + AwsS3 in Companion mode against our
// Companion-compatible /s3 routes (wire format: shared/wire/uppy-aws-s3-5.md).

import AwsS3 from '@uppy/aws-s3';
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import es_ES from '@uppy/locales/lib/es_ES.js';
import en_US from '@uppy/locales/lib/en_US.js';
import pt_BR from '@uppy/locales/lib/pt_BR.js';

import { uploadIdFromKey } from './model.js';

const UPPY_LOCALES = { es: es_ES, en: en_US, 'pt-BR': pt_BR };

/**
 * `onUploaded(uploadId)` is called when a file's bytes are in S3 (the server then
 * processes it and the hub publishes its progress).
 */
export function createUploader({ target, origin, token, projectId, i18n, onUploaded }) {
  const uppy = new Uppy({
    id: 'buildpeer',
    autoProceed: true,
    locale: UPPY_LOCALES[i18n.language] ?? es_ES,
    meta: { projectId },
  });
  uppy.use(Dashboard, {
    target,
    inline: true,
    width: '100%',
    height: 280,
    proudlyDisplayPoweredByUppy: false,
    hideProgressDetails: false,
    note: i18n.t('uploaderNote'),
    doneButtonHandler: () => uppy.clear(),
  });
  uppy.use(AwsS3, {
    endpoint: origin,
    headers: { authorization: `Bearer ${token}` },
  });
  // The size lets the server reject a too-large file before any byte is sent (and list it).
  uppy.on('file-added', (file) => {
    if (Number.isInteger(file.size)) uppy.setFileMeta(file.id, { size: file.size });
  });
  uppy.on('upload-success', (file, response) => {
    const key = response?.body?.key;
    const uploadId = uploadIdFromKey(key) ?? uploadIdFromKey(response?.uploadURL ?? '');
    if (uploadId) onUploaded(uploadId);
  });
  return uppy;
}
