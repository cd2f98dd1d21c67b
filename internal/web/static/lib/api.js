// The HTTP API client and the session. The session is an HttpOnly cookie
// the server sets (signing in with a provider, or with an API token once):
// no page script can read it, nothing is kept in the page's storage, and a
// token typed in the sign-in form travels only in one Authorization header.

export const session = {
  // me is the caller (GET /api/v1/me); null when signed out, undefined
  // until it is known.
  me: undefined,
  get signedIn() { return !!this.me; },
  /** Learns whether the cookie is a session (a 401 is "signed out"). */
  async load() {
    try {
      this.me = await api('GET', '/me');
    } catch (e) {
      if (e.status !== 401) throw e;
      this.me = null;
    }
    return this.me;
  },
  /** Opens a session with an API token; the page does not keep the token. */
  async signInWithToken(token) {
    await api('POST', '/auth/session', {}, {token});
    return this.load();
  },
  async signOut() {
    if (this.me) {
      try { await api('DELETE', '/auth/session'); } catch { /* ended already */ }
    }
    this.me = null;
    window.dispatchEvent(new Event('runnel:signedout'));
  },
  /** The caller's role in a project ('' none; site admins hold every role). */
  roleIn(projectId) {
    if (!this.me) return '';
    if (this.me.role === 'admin') return 'owner';
    return (this.me.projects || []).find((p) => p.projectId === projectId)?.role || '';
  },
  /** Whether the caller holds at least role need in a project. */
  may(projectId, need) {
    const order = ['viewer', 'developer', 'maintainer', 'owner'];
    return order.indexOf(this.roleIn(projectId)) >= order.indexOf(need);
  },
  // A site admin signed in with a token that may administer.
  get isAdmin() { return this.me?.role === 'admin' && (!this.me.scopes || this.me.scopes.includes('admin')); },
};

/** An API error: the envelope's message, status and (for specs) errors. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.errors = body?.errors || [];
    this.body = body;
  }
}

/**
 * Calls the API: api('GET', '/pipelines?pageSize=20'). Resolves with the
 * envelope's detail (or, with {raw: true}, the Response). A 401 signs out.
 */
export async function api(method, path, body, {token = '', raw = false, signal} = {}) {
  const headers = {Accept: 'application/json'};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path.startsWith('/') && !path.startsWith('/api/') ? '/api/v1' + path : path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal,
      cache: 'no-store', credentials: 'same-origin',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The server did not answer: ' + e.message);
  }
  if (raw && res.ok) return res;
  let env = null;
  try { env = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401 && !token && session.me) { session.me = null; window.dispatchEvent(new Event('runnel:signedout')); }
    const msg = env?.errMsg || env?.errors?.[0]?.message || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, msg, env);
  }
  return env?.detail;
}

/** GET with query parameters (empty ones left out). */
export function get(path, params = {}, opts) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, v);
  const qs = q.toString();
  return api('GET', qs ? `${path}?${qs}` : path, undefined, opts);
}

export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const put = (path, body = {}, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** Downloads a response as a file (with the session's cookie). */
export async function download(path, filename) {
  const res = await api('GET', path, undefined, {raw: true});
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
