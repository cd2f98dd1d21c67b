// The HTTP API client and the session. The token lives in sessionStorage (this
// tab only, gone when it closes) and travels only in the Authorization header,
// never in a URL.

const KEY = 'runnel.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY) || ''; },
  me: null,
  signIn(token, me) { sessionStorage.setItem(KEY, token); this.me = me; },
  signOut() {
    sessionStorage.removeItem(KEY);
    this.me = null;
    window.dispatchEvent(new Event('runnel:signedout'));
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
export async function api(method, path, body, {token = session.token, raw = false, signal} = {}) {
  const headers = {Accept: 'application/json'};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path.startsWith('/') && !path.startsWith('/api/') ? '/api/v1' + path : path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal,
      cache: 'no-store', credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The server did not answer: ' + e.message);
  }
  if (raw && res.ok) return res;
  let env = null;
  try { env = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401 && token === session.token && session.token) session.signOut();
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

/** Downloads a response as a file (the token stays in the header). */
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
