// Runnel's web UI: the shell (header, navigation, sign-in) and the router.
// Each page is a module under pages/ exporting a default function
// render(ctx) that fills ctx.main; it is loaded when first visited.

import {h, mount, errorBox, toast} from './lib/dom.js';
import {session, api, ApiError} from './lib/api.js';
import {onState, closeAll} from './lib/live.js';

const routes = [
  ['/', () => navigate('/pipelines', true)],
  ['/signin', signInPage],
  ['/cli-login', cliLoginPage],
  ['/pipelines', 'pipelines.js', 'list'],
  ['/pipelines/new', 'pipelines.js', 'create'],
  ['/pipelines/:pipelineId', 'pipelines.js', 'detail'],
  ['/pipelines/:pipelineId/settings', 'pipelines.js', 'settings'],
  ['/pipelines/:pipelineId/definition', 'editor.js'],
  ['/runs/:runId', 'run.js'],
  ['/agents', 'agents.js'],
  ['/secrets', 'secrets.js', 'secrets'],
  ['/credentials', 'secrets.js', 'credentials'],
  ['/credentials/:credentialId/repositories', 'repositories.js'],
  ['/images', 'images.js', 'list'],
  ['/images/:namespace/:repoName', 'images.js', 'detail'],
  ['/projects', 'projects.js', 'list'],
  ['/projects/:projectId', 'projects.js', 'detail'],
  ['/tokens', 'account.js', 'tokens'],
  ['/users', 'account.js', 'users'],
  ['/providers', 'providers.js'],
  ['/audit', 'account.js', 'audit'],
];

const nav = [
  ['/pipelines', 'Pipelines'],
  ['/projects', 'Projects'],
  ['/agents', 'Agents'],
  ['/secrets', 'Secrets'],
  ['/credentials', 'Credentials'],
  ['/images', 'Images'],
  ['/tokens', 'Tokens'],
  ['/users', 'Users', 'admin'],
  ['/providers', 'Providers', 'admin'],
  ['/audit', 'Audit', 'admin'],
];

const main = document.getElementById('main');
let cleanups = [];
let renderSeq = 0;

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, page, view] of routes) {
    const pp = pattern.split('/').filter(Boolean);
    if (pp.length !== parts.length) continue;
    const params = {};
    if (pp.every((p, i) => (p.startsWith(':') ? (params[p.slice(1)] = decodeURIComponent(parts[i])) : p === parts[i]))) {
      return {page, view, params};
    }
  }
  return null;
}

/** Goes to path (pushState), or replaces the current entry. */
export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

function setTitle(t) { document.title = t ? `${t} · Runnel` : 'Runnel'; }

async function render() {
  const seq = ++renderSeq;
  for (const fn of cleanups.splice(0)) try { fn(); } catch { /* page already gone */ }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  drawHeader(path);
  if (session.me === undefined) {
    try {
      await session.load();
    } catch (e) {
      if (seq === renderSeq) mount(main, errorBox(e));
      return;
    }
    if (seq !== renderSeq) return;
    drawHeader(path);
  }
  if (!session.me && path !== '/signin') {
    navigate('/signin?next=' + encodeURIComponent(path + location.search), true);
    return;
  }
  const m = match(path);
  if (!m) {
    setTitle('Not found');
    mount(main, h('section.page', h('h1', 'Not found'), h('p', 'No page at ', h('code', path), '. ', h('a', {href: '/pipelines'}, 'Go to pipelines'), '.')));
    return;
  }
  const ctx = {
    params: m.params, query, main, view: m.view, navigate, setTitle,
    onCleanup: (fn) => cleanups.push(fn),
    get current() { return seq === renderSeq; },
  };
  try {
    if (typeof m.page === 'function') {
      await m.page(ctx);
    } else {
      const mod = await import('./pages/' + m.page);
      if (seq !== renderSeq) return;
      await mod.default(ctx);
    }
  } catch (e) {
    if (seq !== renderSeq) return;
    if (e instanceof ApiError && e.status === 401) return; // signed out: the listener redirects
    console.error(e);
    mount(main, h('section.page', errorBox(e)));
  }
  if (seq === renderSeq && !query.has('line')) main.focus({preventScroll: true});
}

let connState = 'closed';
onState((s) => {
  connState = s;
  const dot = document.getElementById('conn');
  if (dot) { dot.className = 'conn ' + s; dot.title = 'Live updates: ' + s; }
});

function drawHeader(path) {
  const header = document.getElementById('top');
  const links = nav.filter(([, , who]) => who !== 'admin' || session.isAdmin)
    .map(([href, label]) => h('a', {href, 'aria-current': path.startsWith(href) ? 'page' : null}, label));
  const me = session.me;
  mount(header,
    h('a.brand', {href: '/pipelines', 'aria-label': 'Runnel home'}, h('img', {src: '/assets/favicon.svg', alt: '', width: 22, height: 22}), 'Runnel'),
    session.me ? h('nav.main-nav', {'aria-label': 'Main'}, links) : null,
    h('div.spacer'),
    session.me ? h('div.who',
      h('span#conn', {class: 'conn ' + connState, title: 'Live updates: ' + connState, role: 'img', 'aria-label': 'live updates'}),
      me ? h('span.subject', {title: `role ${me.role}`}, me.subject) : null,
      h('button.btn.small', {type: 'button', onclick: signOut}, 'Sign out')) : null);
}

function signOut() {
  closeAll();
  session.signOut();
}

window.addEventListener('runnel:signedout', () => {
  closeAll();
  if (location.pathname !== '/signin') navigate('/signin?next=' + encodeURIComponent(location.pathname + location.search), true);
});

async function signInPage(ctx) {
  setTitle('Sign in');
  const next = ctx.query.get('next');
  const dest = next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/signin') ? next : '/pipelines';
  const refused = ctx.query.get('error');
  if (session.me) {
    // A signed-in user sent here by a refused account connection.
    if (refused) toast('Refused: ' + refused, 'error');
    navigate(dest, true);
    return;
  }
  const input = h('input', {type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false', placeholder: 'rnl_…', 'aria-describedby': 'token-hint'});
  const msg = h('div', {'aria-live': 'polite'});
  if (refused) mount(msg, errorBox(new Error('Sign-in refused: ' + refused)));
  const providers = h('div.providers');
  const form = h('form.card.signin', {
    onsubmit: async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      mount(msg);
      try {
        await session.signInWithToken(token);
        input.value = '';
        navigate(dest, true);
      } catch (err) {
        mount(msg, errorBox(err.status === 401 ? new Error('That token was not accepted: check it, or ask an admin for a new one.') : err));
        input.select();
      }
    },
  },
  h('h1', 'Sign in to Runnel'),
  providers,
  h('div.field', h('label', {for: 'token'}, 'API token'), Object.assign(input, {id: 'token'}),
    h('small.hint#token-hint', 'A user or admin token. The server prints the admin token on its first start (or set one with --admin-token). It opens a session in this browser and is not kept by the page.')),
  msg,
  h('button.btn.primary', {type: 'submit'}, 'Sign in'));
  mount(ctx.main, h('section.page.narrow', form));
  input.focus();
  try {
    const list = await api('GET', '/auth/providers');
    if (!ctx.current) return;
    mount(providers, ...list.items.map((p) => h('a.btn.provider', {href: `${p.loginUrl}?returnTo=${encodeURIComponent(dest)}`},
      'Sign in with ' + p.displayName)), list.items.length ? h('p.or', 'or with an API token:') : null);
  } catch { /* the token form still works */ }
}

// runnel login: the command line on this machine asks to act as the
// signed-in user; on consent the browser goes to its loopback address with
// a one-use code (worthless without the verifier the command line keeps).
function cliLoginPage(ctx) {
  setTitle('Sign the command line in');
  const port = Number(ctx.query.get('port'));
  const challenge = ctx.query.get('challenge') || '';
  const msg = h('div', {'aria-live': 'polite'});
  const authorize = h('button.btn.primary#cli-authorize', {type: 'button', onclick: async () => {
    mount(msg);
    try {
      const r = await api('POST', '/auth/cli/grant', {port, challenge});
      location.assign(r.redirect);
    } catch (e) { mount(msg, errorBox(e)); }
  }}, 'Authorize');
  mount(ctx.main, h('section.page.narrow', h('div.card.signin',
    h('h1', 'Sign the command line in'),
    h('p', 'A ', h('code', 'runnel login'), ' on this computer asks to act as ', h('strong', session.me.subject),
      ' with a new API token (listed on the Tokens page, where you can revoke it). Authorize only if you started it.'),
    msg,
    h('div.actions', authorize, h('a.btn', {href: '/pipelines'}, 'Cancel')))));
}

// Same-origin links go through the router, unless opened elsewhere.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download') || a.origin !== location.origin || a.getAttribute('href').startsWith('#')) return;
  if (!a.pathname.startsWith('/') || a.pathname.startsWith('/api/') || a.pathname.startsWith('/assets/')) return;
  e.preventDefault();
  if (a.pathname + a.search === location.pathname + location.search && !a.hash) return;
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', render);

render();
