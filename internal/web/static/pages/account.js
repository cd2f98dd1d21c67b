// Your API tokens (every user), and the users of the server (admins only).
// A token's value is shown once, in the dialog that follows its creation:
// only its hash is stored.

import {h, mount, badge, when, toast, dialog, formDialog, confirm, errorBox, copy, field, thead} from '../lib/dom.js';
import {get, post, put, del, session} from '../lib/api.js';
import {pager} from './pipelines.js';

const SCOPES = [
  ['read', 'see pipelines, runs, logs, artifacts, agents'],
  ['run', 'trigger, stop, pause and resume runs, approve, start image builds'],
  ['write', 'change pipelines, definitions, secrets, credentials, image repositories; manage your tokens'],
  ['admin', 'users, agents and registration tokens (site admins only)'],
];
const EXPIRIES = [['', 'Never'], ['86400', 'In 1 day'], ['604800', 'In 7 days'], ['2592000', 'In 30 days'], ['7776000', 'In 90 days']];

export default async function render(ctx) {
  if (ctx.view === 'users') return usersPage(ctx);
  if (ctx.view === 'audit') return auditPage(ctx);
  return tokensPage(ctx);
}

// ---- your tokens ----

async function tokensPage(ctx) {
  ctx.setTitle('API tokens');
  const box = h('div', h('p.loading', 'Loading tokens…'));
  const me = session.me || {};
  if (!me.user) {
    mount(ctx.main, h('section.page', h('h1', 'API tokens'),
      h('p', 'The token you signed in with belongs to no user (it was made before users existed): sign in with a user\'s token to manage tokens here.')));
    return;
  }

  const sessionsBox = h('div');
  async function load() {
    let list, sessions;
    try {
      [list, sessions] = await Promise.all([get('/tokens'), get('/sessions')]);
    } catch (err) {
      if (ctx.current) mount(box, errorBox(err));
      return;
    }
    if (!ctx.current) return;
    mount(box, tokensTable(list.items || [], (t) => revoke(t)));
    mount(sessionsBox, sessionsTable(sessions.items || [], (x) => endSession(x)));
  }

  async function endSession(x) {
    if (!(await confirm('End this session?', x.current
      ? 'This is this browser: you will be signed out.'
      : 'That browser is signed out at its next request.', 'End session', 'danger'))) return;
    try {
      await del(`/sessions/${encodeURIComponent(x.sessionId)}`);
      toast('Session ended', 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    if (x.current) session.signOut();
    else load();
  }

  async function revoke(t) {
    const self = t.tokenId === me.tokenId;
    if (!(await confirm(`Revoke ${t.name}?`, self
      ? 'This is the token you are signed in with: you will be signed out.'
      : 'Whatever uses it gets 401 from now on.', 'Revoke', 'danger'))) return;
    try {
      await del(`/tokens/${encodeURIComponent(t.tokenId)}`);
      toast(`${t.name} revoked`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    if (self) session.signOut();
    else load();
  }

  const mine = me.scopes || [];
  const form = tokenForm(SCOPES.filter(([s]) => mine.includes(s)).map(([s]) => s), async (body) => {
    const created = await post('/tokens', body);
    load();
    await showToken(created, me.subject);
  });

  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'API tokens'),
      h('div.sub', h('span', `Tokens of ${me.subject}, for the API, the command line and CI jobs.`)))),
    box,
    h('h2', 'Browser sessions'),
    h('p.muted', 'Where you are signed in to this web UI; a session lasts until it expires or you end it.'),
    sessionsBox,
    h('h2', 'New token'),
    h('p.muted', 'A new token cannot do more than the one you are signed in with.'),
    form));
  await load();
}

function sessionsTable(items, onEnd) {
  if (!items.length) return h('div.table-wrap', h('p.empty', 'No browser sessions.'));
  return h('div.table-wrap', h('table', {'aria-label': 'Browser sessions'},
    thead('Signed in', 'With', '~Browser', '~Last seen', 'Expires', 'Actions'),
    h('tbody', items.map((x) => h('tr', {'data-session': x.sessionId},
      h('td', when(x.createdAt), x.current ? h('div', h('span.chip', 'this browser')) : null),
      h('td', x.provider || 'API token', x.scopes.length ? h('div', x.scopes.map((sc) => h('span.chip', sc))) : null),
      h('td.hide-sm', h('small', x.userAgent || '—'), x.remoteAddr ? h('div.muted', x.remoteAddr) : null),
      h('td.hide-sm', when(x.lastSeenAt)),
      h('td', when(x.expiresAt)),
      h('td', h('button.btn.small.danger', {type: 'button', onclick: () => onEnd(x)}, 'End')))))));
}

function tokensTable(items, onRevoke) {
  if (!items.length) return h('div.table-wrap', h('p.empty', 'No tokens.'));
  return h('div.table-wrap', h('table', {'aria-label': 'API tokens'},
    thead('Name', 'Scopes', 'Expires', '~Created', '~Last used', 'Actions'),
    h('tbody', items.map((t) => {
      const expired = t.expiresAt && Date.parse(t.expiresAt) <= Date.now();
      return h('tr', {'data-token': t.tokenId},
        h('td', h('strong', t.name), h('div', h('small.muted.mono', t.tokenId)),
          t.tokenId === session.me?.tokenId ? h('div', h('span.chip', 'this session')) : null,
          expired ? h('div', badge('expired')) : null),
        h('td', t.scopes.map((s) => h('span.chip', s))),
        h('td', t.expiresAt ? when(t.expiresAt) : h('span.muted', 'never')),
        h('td.hide-sm', when(t.createdAt)),
        h('td.hide-sm', when(t.lastUsedAt)),
        h('td', h('button.btn.small.danger', {type: 'button', onclick: () => onRevoke(t)}, 'Revoke')));
    }))));
}

/**
 * The fields of a new token offering the scopes allowed: {el, body()}, where
 * body() returns the request body or throws an Error saying what is missing.
 */
function tokenFields(allowed) {
  const name = h('input', {type: 'text', name: 'name', maxlength: 200, required: true, autocomplete: 'off', placeholder: 'laptop CLI'});
  const boxes = SCOPES.filter(([s]) => allowed.includes(s)).map(([s]) => {
    const box = h('input', {type: 'checkbox', name: 'scope', value: s, 'aria-describedby': 'scope-' + s});
    box.defaultChecked = s !== 'admin'; // what a form reset goes back to
    return box;
  });
  const expiry = h('select', {name: 'expiry'}, EXPIRIES.map(([v, l]) => h('option', {value: v, selected: v === '2592000'}, l)));
  const el = h('div',
    h('div.grid2', field('Name', name, 'What it is for'), field('Expires', expiry)),
    h('fieldset.scopes', h('legend', 'Scopes (each includes the ones above it)'),
      boxes.map((box) => {
        const what = SCOPES.find(([s]) => s === box.value)[1];
        return h('div.field', h('label.row', box, h('strong', box.value)), h('small.hint', {id: 'scope-' + box.value}, what));
      })));
  const body = () => {
    const scopes = boxes.filter((i) => i.checked).map((i) => i.value);
    if (!name.value.trim()) throw new Error('Name: say what the token is for');
    if (!scopes.length) throw new Error('Scopes: pick at least one');
    const b = {name: name.value.trim(), scopes};
    if (expiry.value) b.expiresAt = new Date(Date.now() + Number(expiry.value) * 1000).toISOString();
    return b;
  };
  return {el, body};
}

/** A form for a new token offering the scopes allowed; submit(body) creates it. */
function tokenForm(allowed, submit) {
  const fields = tokenFields(allowed);
  const msg = h('div');
  const button = h('button.btn.primary', {type: 'submit'}, 'Create token');
  const form = h('form.card.token-form', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      button.disabled = true;
      try {
        await submit(fields.body());
        form.reset();
      } catch (err) {
        mount(msg, errorBox(err));
      } finally {
        button.disabled = false;
      }
    },
  }, fields.el, msg, h('div.actions', button));
  return form;
}

async function showToken(t, login) {
  await dialog('Token created', [
    h('div.alert.warn', 'This is the only time the token is shown: only its hash is stored. Copy it now.'),
    h('p', h('strong', t.name), ' · ', login, ' · ', t.scopes.join(', '), ' · ', t.expiresAt ? ['expires ', when(t.expiresAt)] : 'never expires'),
    h('div.secret-once', t.token),
    h('div.actions', h('button.btn', {type: 'button', onclick: () => copy(t.token, 'Token copied')}, 'Copy token')),
    h('p.hint', 'Send it as "Authorization: Bearer …", or sign in to this UI with it.'),
  ], [['Done', 'ok', 'primary']]);
}

// ---- users (admins) ----

async function usersPage(ctx) {
  ctx.setTitle('Users');
  if (!session.isAdmin) {
    mount(ctx.main, h('section.page', h('h1', 'Users'), h('p', 'Only site admins, signed in with a token that has the admin scope, manage users.')));
    return;
  }
  const box = h('div', h('p.loading', 'Loading users…'));

  async function load() {
    let list;
    try {
      list = await get('/users');
    } catch (err) {
      if (ctx.current) mount(box, errorBox(err));
      return;
    }
    if (ctx.current) mount(box, usersTable(list.items || []));
  }

  async function change(u, body, done) {
    try {
      await put(`/users/${encodeURIComponent(u.userId)}`, body);
      toast(done, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    load();
  }

  async function remove(u) {
    if (!(await confirm(`Delete ${u.login}?`, 'The user and every token of theirs are removed; what they created stays, under their login.', 'Delete', 'danger'))) return;
    try {
      await del(`/users/${encodeURIComponent(u.userId)}`);
      toast(`${u.login} deleted`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    load();
  }

  async function newToken(u) {
    const fields = tokenFields(SCOPES.map(([s]) => s).filter((s) => s !== 'admin' || u.admin));
    let created = null;
    const ok = await formDialog(`New token for ${u.login}`, fields.el, 'Create token', async () => {
      created = await post(`/users/${encodeURIComponent(u.userId)}/tokens`, fields.body());
    });
    if (ok && created) await showToken(created, u.login);
  }

  function usersTable(items) {
    return h('div.table-wrap', h('table', {'aria-label': 'Users'},
      thead('User', 'Role', '~Email', '~Created', 'Actions'),
      h('tbody', items.map((u) => h('tr', {'data-user': u.login},
        h('td', h('strong', u.login), u.name ? h('div', u.name) : null, u.disabled ? h('div', badge('disabled')) : null),
        h('td', u.admin ? 'admin' : 'user'),
        h('td.hide-sm', u.email || h('span.muted', '—')),
        h('td.hide-sm', when(u.createdAt)),
        h('td.actions',
          h('button.btn.small', {type: 'button', onclick: () => newToken(u)}, 'New token'),
          h('button.btn.small', {type: 'button', onclick: () => change(u, {admin: !u.admin}, u.admin ? `${u.login} is no longer an admin` : `${u.login} is an admin`)},
            u.admin ? 'Remove admin' : 'Make admin'),
          h('button.btn.small', {type: 'button', onclick: () => change(u, {disabled: !u.disabled}, `${u.login} ${u.disabled ? 'enabled' : 'disabled'}`)},
            u.disabled ? 'Enable' : 'Disable'),
          h('button.btn.small.danger', {type: 'button', onclick: () => remove(u)}, 'Delete')))))));
  }

  const login = h('input', {type: 'text', name: 'login', required: true, maxlength: 63, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,62}', autocomplete: 'off', spellcheck: 'false', placeholder: 'alice'});
  const name = h('input', {type: 'text', name: 'name', maxlength: 200, autocomplete: 'off', placeholder: 'Alice Example'});
  const email = h('input', {type: 'email', name: 'email', maxlength: 254, autocomplete: 'off', placeholder: 'alice@example.com'});
  const admin = h('input', {type: 'checkbox', name: 'admin'});
  const msg = h('div');
  const form = h('form.card.user-form', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      const body = {login: login.value.trim(), admin: admin.checked};
      if (name.value.trim()) body.name = name.value.trim();
      if (email.value.trim()) body.email = email.value.trim();
      try {
        const u = await post('/users', body);
        form.reset();
        toast(`${u.login} created: give them a token with New token`, 'success');
        load();
      } catch (err) {
        mount(msg, errorBox(err));
      }
    },
  },
  h('div.grid2', field('Login', login, 'Letters, digits, . _ -; the name recorded on what they do'), field('Name', name), field('Email', email),
    h('div.field', h('label.row', admin, 'Site admin'), h('small.hint', 'May manage users, agents and registration tokens'))),
  msg,
  h('div.actions', h('button.btn.primary', {type: 'submit'}, 'Create user')));

  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Users'), h('div.sub', h('span', 'Who may use this server, and their tokens.')))),
    box,
    h('h2', 'New user'),
    form));
  await load();
}

// ---- audit log (admins) ----

async function auditPage(ctx) {
  ctx.setTitle('Audit log');
  if (!session.isAdmin) {
    mount(ctx.main, h('section.page', h('h1', 'Audit log'), h('p', 'Only site admins, signed in with a token that has the admin scope, read the audit log.')));
    return;
  }
  const actor = h('input', {type: 'search', name: 'actor', autocomplete: 'off', spellcheck: 'false', placeholder: 'alice', value: ctx.query.get('actor') || ''});
  const resource = h('input', {type: 'search', name: 'resource', autocomplete: 'off', spellcheck: 'false', placeholder: '/api/v1/pipelines/pl_…', value: ctx.query.get('resource') || ''});
  const box = h('div', h('p.loading', 'Loading the audit log…'));
  let page = 1;

  async function load() {
    let res;
    try {
      res = await get('/audit', {actor: actor.value.trim(), resource: resource.value.trim(), page, pageSize: 50});
    } catch (err) {
      if (ctx.current) mount(box, errorBox(err));
      return;
    }
    if (!ctx.current) return;
    const items = res.items || [];
    mount(box, items.length ? [h('div.table-wrap', h('table', {'aria-label': 'Audit log'},
      thead('When', 'Who', 'What', 'Resource', '~From'),
      h('tbody', items.map((e) => h('tr',
        h('td', when(e.time)),
        h('td', h('strong', e.actor)),
        h('td.mono', e.action),
        h('td.mono', e.resource),
        h('td.hide-sm', h('small.muted', e.remoteAddr), h('div', h('small.muted.mono', e.requestId)))))))),
    pager(res, (n) => { page = n; load(); })] : h('p.empty', 'No entries.'));
  }

  const form = h('form.filters', {onsubmit: (e) => { e.preventDefault(); page = 1; load(); }},
    field('Who (login)', actor), field('Resource (path prefix)', resource), h('button.btn', {type: 'submit'}, 'Filter'));
  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Audit log'),
      h('div.sub', h('span', 'Every change made through the API: who, what, when, from where. Runs record their own triggers and stops.')))),
    form, box));
  await load();
}
