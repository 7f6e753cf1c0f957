// The BuildPeer live uploads dashboard: one project's uploads, live.

import './styles.css';

import { Api, ApiError } from './api.js';
import { clear, h } from './dom.js';
import { BRAND, I18n, N_ } from './i18n.js';
import { connectLive, websocketUrl } from './live.js';
import { UploadList } from './model.js';
import { clearSession, loadSession, saveSession, tokenClaims, validate } from './session.js';
import { createUploader } from './uploader.js';
import { UploadTable } from './view.js';

const READ_ONLY_ROLES = new Set(['investor']);
// What session.validate() finds wrong with the login form.
const PROBLEMS = {
  invalidProject: N_('The project id is not valid.'),
  missingToken: N_('The access token is missing.'),
};
// The live connection's states (live.js) in words.
const CONNECTION_STATES = {
  connecting: N_('Connecting…'),
  connected: N_('Live'),
  disconnected: N_('Live updates offline'),
};

function showLogin(root, i18n, message) {
  const project = h('input', {
    id: 'login-project',
    name: 'project',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: '00000000-0000-0000-0000-000000000000',
  });
  const token = h('textarea', { id: 'login-token', name: 'token', required: true, rows: '4', spellcheck: 'false' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: !message }, message ?? '');
  const form = h(
    'form',
    { class: 'login card', id: 'login' },
    h('h1', {}, i18n._('Sign in to the uploads dashboard')),
    h('p', { class: 'muted' }, i18n._('Paste the project id and your access token (buildpeer dev prints them at start).')),
    h('label', { for: 'login-project' }, i18n._('Project')),
    project,
    h('label', { for: 'login-token' }, i18n._('Access token')),
    token,
    error,
    h('button', { type: 'submit', class: 'primary' }, i18n._('Sign in')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const session = { projectId: project.value.trim().toLowerCase(), token: token.value.trim() };
    const problem = validate(session.projectId, session.token);
    if (problem) {
      error.textContent = i18n._(PROBLEMS[problem] ?? problem);
      error.hidden = false;
      return;
    }
    saveSession(window, session);
    clear(root);
    startDashboard(root, i18n, session);
  });
  clear(root).append(h('main', { class: 'login-page' }, form));
}

function errorMessage(i18n, err) {
  if (err instanceof ApiError) {
    if (err.status === 403) return i18n._('You do not have access to this project.');
    if (err.status === 404) return i18n._('This project was not found.');
    return i18n._('Could not load the list: {message}', { message: err.message });
  }
  return i18n._('Could not load the list: {message}', { message: String(err) });
}

function startDashboard(root, i18n, session) {
  const { projectId, token } = session;
  const claims = tokenClaims(token);
  const api = new Api(window.location.origin, token);
  const list = new UploadList(projectId);
  let nextCursor = null;
  let pagedFurther = false; // "load more" was used: a reload of page 1 keeps the cursor
  let live = null;
  let uploader = null;
  // The Files this page uploaded, by upload id: a failed one can be sent again (a new upload).
  const localFiles = new Map();
  // Uppy's latest progress of this page's uploads, shown on the row once the row is listed.
  const localProgress = new Map();
  const showLocalProgress = (uploadId) => {
    const row = list.get(uploadId);
    const progress = localProgress.get(uploadId);
    if (!row || !progress) return;
    const publication = {
      upload_id: uploadId,
      type: 'upload.progress',
      status: row.status,
      data: { bytes_done: progress.bytes, size: progress.total },
    };
    if (list.apply(publication).changed) render();
  };

  const connection = h('span', { class: 'connection', id: 'connection', dataset: { state: 'connecting' } }, i18n._('Connecting…'));
  const logout = h('button', { type: 'button', class: 'link' }, i18n._('Sign out'));
  const banner = h('p', { class: 'banner', role: 'alert', id: 'banner', hidden: true });
  const count = h('span', { class: 'count muted' });
  const uploaderBox = h('div', { id: 'uploader' });
  const tableBox = h('div', { class: 'table-box' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, i18n._('Load more'));
  const canUpload = !READ_ONLY_ROLES.has(claims.role);
  // The inbox bell: the unread count, live on the user: channel; the list on click.
  const bellCount = h('span', { class: 'bell-count', id: 'bell-count' }, '0');
  const bell = h(
    'button',
    { type: 'button', class: 'bell', id: 'bell', 'aria-label': i18n._('Notifications'), 'aria-expanded': 'false' },
    h('span', { 'aria-hidden': 'true' }, '\u{1F514}'),
    bellCount,
  );
  const bellPanel = h('div', { class: 'bell-panel card', id: 'bell-panel', hidden: true });
  const setUnread = (n) => {
    bellCount.textContent = String(n);
    bell.dataset.unread = String(n);
  };
  const showInbox = () =>
    api.notifications().then((page) => {
      setUnread(page.unread ?? 0);
      const items = page.items ?? [];
      clear(bellPanel).append(
        items.length === 0
          ? h('p', { class: 'muted' }, i18n._('You have no notifications.'))
          : h(
              'ul',
              { class: 'bell-items' },
              ...items.map((item) =>
                h('li', { class: item.read_at ? 'bell-item' : 'bell-item unread' }, item.title ?? item.kind ?? ''),
              ),
            ),
      );
    });
  bell.addEventListener('click', () => {
    bellPanel.hidden = !bellPanel.hidden;
    bell.setAttribute('aria-expanded', String(!bellPanel.hidden));
    if (!bellPanel.hidden) showInbox().catch(() => {});
  });
  api.unreadCount().then((answer) => setUnread(answer.unread ?? 0), () => {});
  // The caller's projects by name (GET /api/v1/me); choosing one shows it.
  const picker = h('select', { id: 'project-picker', disabled: true });
  picker.addEventListener('change', () => {
    const next = { projectId: picker.value, token };
    live?.close();
    uploader?.close(); // Uppy and its pending progress reports go with the page
    saveSession(window, next);
    startDashboard(root, i18n, next);
  });

  clear(root).append(
    h(
      'header',
      { class: 'topbar' },
      h('div', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, 'BP'), BRAND),
      h('div', { class: 'topbar-right' }, bell, bellPanel, connection, logout),
    ),
    h(
      'main',
      { class: 'page' },
      h(
        'div',
        { class: 'page-title' },
        h('h1', {}, i18n._('Project uploads')),
        h('p', { class: 'muted' }, `${i18n._('Project')} `, h('code', { id: 'project-id' }, projectId)),
        h('label', { class: 'picker' }, `${i18n._('Switch project:')} `, picker),
      ),
      banner,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'upload-heading' },
        h('h2', { id: 'upload-heading' }, i18n._('Upload files')),
        canUpload ? uploaderBox : h('p', { class: 'muted' }, i18n._('Your role can only view this project’s uploads.')),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'files-heading' },
        h('div', { class: 'section-head' }, h('h2', { id: 'files-heading' }, i18n._('Files')), count),
        tableBox,
        more,
      ),
    ),
  );

  api.me().then(
    (me) => {
      clear(picker);
      for (const project of me.projects ?? []) {
        const option = h('option', { value: project.id }, project.name);
        option.selected = project.id === projectId;
        picker.append(option);
      }
      picker.disabled = (me.projects ?? []).length === 0;
      const current = (me.projects ?? []).find((p) => p.id === projectId);
      if (current) document.title = `${current.name} · ${BRAND}`;
    },
    () => {}, // the list's own requests report errors (401, 403) to the page
  );

  const table = new UploadTable(tableBox, i18n, async (uploadId, kind) => (await api.derivative(uploadId, kind)).url, {
    // A ready file opens through the download route (a short-lived presigned GET).
    open: (doc) =>
      api.original(doc.id).then((answer) => {
        window.location.assign(answer.url);
      }, fail),
    // A failed file this page still holds is uploaded again, as a new upload (the failed row
    // stays, with its reason).
    canRetry: (doc) => doc.status === 'failed' && uploader !== null && localFiles.has(doc.id),
    retry: (doc) => {
      const file = localFiles.get(doc.id);
      if (!file || !uploader) return;
      localFiles.delete(doc.id);
      uploader.retry(file);
      render();
    },
    // Its uploader (or an admin) may delete it; the row leaves at once and stays gone.
    canRemove: (doc) => claims.role === 'admin' || (canUpload && doc.uploader_id === claims.sub),
    remove: (doc) =>
      api.remove(doc.id).then(
        () => {
          list.upsert({ ...doc, status: 'deleted', version: (doc.version ?? 0) + 1 });
          render();
        },
        (err) => {
          if (err instanceof ApiError && err.status === 401) return fail(err);
          banner.textContent = i18n._('Could not delete: {message}', { message: err.message });
          banner.hidden = false;
        },
      ),
  });

  const render = () => {
    const docs = list.sorted();
    table.render(docs);
    count.textContent = i18n.ngettext('{count} file', '{count} files', docs.length);
    more.hidden = !nextCursor;
  };

  const fail = (err) => {
    if (err instanceof ApiError && err.status === 401) {
      live?.close();
      uploader?.close();
      clearSession(window);
      showLogin(root, i18n, i18n._('Your session expired or the token is not valid. Sign in again.'));
      return;
    }
    banner.textContent = errorMessage(i18n, err);
    banner.hidden = false;
  };

  let reloading = null;
  const reload = () => {
    // One reload at a time; a request made during one runs once it finishes.
    if (reloading) {
      reloading.again = true;
      return;
    }
    reloading = { again: false };
    api
      .listUploads(projectId)
      .then((page) => {
        for (const doc of page.items ?? []) list.upsert(doc);
        if (!pagedFurther) nextCursor = page.next_cursor ?? null;
        banner.hidden = true;
        render();
      }, fail)
      .finally(() => {
        const again = reloading.again;
        reloading = null;
        if (again) reload();
      });
  };

  // A row that turned ready through an event needs its document for the derivative list;
  // the status cache may still hold the previous one for a moment, so ask again (bounded).
  const fetching = new Set();
  const fetchOne = (uploadId, attempt = 0) => {
    if (fetching.has(uploadId)) return;
    fetching.add(uploadId);
    api
      .upload(uploadId)
      .then((doc) => {
        if (list.upsert(doc)) render();
        showLocalProgress(uploadId);
        const row = list.get(uploadId);
        if (row && row.status === 'ready' && row.derivatives.length === 0 && attempt < 4) {
          setTimeout(() => fetchOne(uploadId, attempt + 1), 500 * 2 ** attempt);
        }
      })
      .catch((err) => {
        if (err instanceof ApiError && err.status === 401) fail(err);
      })
      .finally(() => fetching.delete(uploadId));
  };

  more.addEventListener('click', () => {
    if (!nextCursor) return;
    more.disabled = true;
    api
      .listUploads(projectId, nextCursor)
      .then((page) => {
        for (const doc of page.items ?? []) list.upsert(doc);
        pagedFurther = true;
        nextCursor = page.next_cursor ?? null;
        render();
      }, fail)
      .finally(() => {
        more.disabled = false;
      });
  });

  logout.addEventListener('click', () => {
    live?.close();
    uploader?.close();
    clearSession(window);
    showLogin(root, i18n);
  });

  live = connectLive({
    url: websocketUrl(window.location),
    token,
    projectId,
    userId: claims.sub,
    onUserPublication: (data) => {
      if (typeof data?.unread === 'number') setUnread(data.unread);
      if (data?.type === 'inbox.item' && !bellPanel.hidden) showInbox().catch(() => {});
    },
    onPublication: (data) => {
      const { changed, fetch } = list.apply(data);
      if (changed) render();
      if (fetch) fetchOne(fetch);
    },
    onResync: reload,
    onState: (state) => {
      connection.dataset.state = state;
      connection.textContent = i18n._(CONNECTION_STATES[state] ?? state);
    },
    onError: (err) => console.warn('live updates:', err),
  });

  if (canUpload) {
    uploader = createUploader({
      target: uploaderBox,
      origin: window.location.origin,
      token,
      projectId,
      i18n,
      callbacks: {
        onStarted: (uploadId, file) => {
          if (file instanceof Blob) localFiles.set(uploadId, file);
          fetchOne(uploadId);
        },
        // The bar moves with Uppy's own progress; the server hears of it (throttled) too.
        onProgress: (uploadId, bytes, total) => {
          localProgress.set(uploadId, { bytes, total });
          showLocalProgress(uploadId);
        },
        onUploaded: fetchOne,
        onError: fetchOne,
      },
    });
  }
  reload();
  render();
}

function main() {
  const params = new URLSearchParams(window.location.search);
  const i18n = new I18n(params.get('lang') || document.documentElement.lang);
  document.documentElement.lang = i18n.language;
  document.title = `${i18n._('Project uploads')} · ${BRAND}`;
  const root = document.getElementById('app');
  const session = loadSession(window);
  if (session) startDashboard(root, i18n, session);
  else showLogin(root, i18n);
}

main();
