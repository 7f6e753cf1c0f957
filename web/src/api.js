// The BuildPeer HTTP API, with the bearer token. Errors are `ApiError`s carrying the
// server's JSON error code (DESIGN §3: {"error": {"code", "message"}}).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(origin, token) {
    this.origin = origin;
    this.token = token;
  }

  async get(path, method = 'GET') {
    let response;
    try {
      response = await fetch(new URL(path, this.origin), {
        method,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json' },
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err instanceof Error ? err.message : String(err));
    }
    let body = null;
    try {
      body = response.status === 204 ? null : await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = body && typeof body === 'object' ? body.error : null;
      throw new ApiError(
        response.status,
        (error && error.code) || `http_${response.status}`,
        (error && error.message) || response.statusText || `HTTP ${response.status}`,
      );
    }
    return body;
  }

  /** One page of the project's uploads, newest first: {items, next_cursor}. */
  listUploads(projectId, cursor = null, limit = 50) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (cursor) params.set('cursor', cursor);
    return this.get(`/api/v1/projects/${encodeURIComponent(projectId)}/uploads?${params}`);
  }

  /** The caller's inbox, newest first: {items, next_cursor, unread}. */
  notifications() {
    return this.get('/api/v1/me/notifications?limit=20');
  }

  unreadCount() {
    return this.get('/api/v1/me/notifications/unread-count');
  }

  /** The caller: {user, role, tenant, projects: [{id, name}], can_upload}. */
  me() {
    return this.get('/api/v1/me');
  }

  upload(uploadId) {
    return this.get(`/api/v1/uploads/${encodeURIComponent(uploadId)}`);
  }

  /** A short-lived download URL of a ready upload's scanned original: {url, expires_in, ...}. */
  original(uploadId) {
    return this.get(`/api/v1/uploads/${encodeURIComponent(uploadId)}/original`);
  }

  /** Deletes an upload (its uploader or an admin): every version and derivative. */
  remove(uploadId) {
    return this.get(`/api/v1/uploads/${encodeURIComponent(uploadId)}`, 'DELETE');
  }

  /** A short-lived URL of a ready upload's derivative: {url, expires_in, kind, mime_type}. */
  derivative(uploadId, kind) {
    return this.get(`/api/v1/uploads/${encodeURIComponent(uploadId)}/derivatives/${encodeURIComponent(kind)}`);
  }
}
