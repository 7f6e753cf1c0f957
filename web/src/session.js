// Who is looking at which project: `?project=<id>&token=<jwt>` or the login form. The
// token is kept in sessionStorage and removed from the address bar (no tokens in history,
// Referer headers or screenshots).

const KEY = 'buildpeer.dashboard.session';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value) {
  return typeof value === 'string' && UUID.test(value.trim());
}

/** The JWT's claims, for display only (the server verifies the token). */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1];
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

export function validate(projectId, token) {
  if (!isUuid(projectId)) return 'invalidProject';
  if (typeof token !== 'string' || token.trim().split('.').length !== 3) return 'missingToken';
  return null;
}

export function loadSession(win) {
  const url = new URL(win.location.href);
  const fromUrl = { projectId: url.searchParams.get('project'), token: url.searchParams.get('token') };
  if (fromUrl.token) {
    url.searchParams.delete('token');
    win.history.replaceState(null, '', url.pathname + (url.search || '') + url.hash);
  }
  let stored = {};
  try {
    stored = JSON.parse(win.sessionStorage.getItem(KEY) || '{}') || {};
  } catch {
    stored = {};
  }
  const session = {
    projectId: (fromUrl.projectId || stored.projectId || '').trim().toLowerCase(),
    token: (fromUrl.token || stored.token || '').trim(),
  };
  if (validate(session.projectId, session.token)) return null;
  saveSession(win, session);
  return session;
}

export function saveSession(win, session) {
  win.sessionStorage.setItem(KEY, JSON.stringify({ projectId: session.projectId, token: session.token }));
}

export function clearSession(win) {
  win.sessionStorage.removeItem(KEY);
}
