// Sign-in providers (site admins): the forges' OAuth applications and the
// OpenID Connect providers users sign in with and connect their forge
// accounts through. The client secret is write-only: no answer of the API
// holds it, so an edit's empty secret field keeps the stored one.

import {h, mount, when, toast, confirm, errorBox, copy, field, formDialog, thead} from '../lib/dom.js';
import {get, post, put, del, session} from '../lib/api.js';
import {PROVIDER_KINDS as KINDS, PATTERNS} from '../lib/forges.js';

const path = (name) => `/auth/providers/${encodeURIComponent(name)}`;
const CALLBACK = (name) => `/api/v1/auth/providers/${encodeURIComponent(name)}/callback`;

// A list field's text as the API's array ("a, b" or "a b" for scopes).
const splitList = (v, spaces) => v.split(spaces ? /[\s,]+/ : /,/).map((s) => s.trim()).filter(Boolean);

export default async function render(ctx) {
  ctx.setTitle('Sign-in providers');
  if (!session.isAdmin) {
    mount(ctx.main, h('section.page', h('h1', 'Sign-in providers'),
      h('p', 'Only site admins, signed in with a token that has the admin scope, configure sign-in providers.')));
    return;
  }
  const box = h('div', h('p.loading', 'Loading providers…'));
  // The callback URLs' origin, as the server words them (--external-url, or
  // the address this page came from): the first listed provider tells.
  let base = location.origin;

  async function load() {
    let items;
    try {
      const list = await get('/auth/providers');
      // The public list lacks the configuration: each provider's own GET has it.
      items = await Promise.all((list.items || []).map((p) => get(path(p.name)).catch(() => p)));
    } catch (err) {
      if (ctx.current) mount(box, errorBox(err));
      return;
    }
    if (!ctx.current) return;
    const known = items.find((p) => p.callbackUrl?.includes('/api/v1/auth/providers/'));
    if (known) base = known.callbackUrl.slice(0, known.callbackUrl.indexOf('/api/v1/auth/providers/'));
    mount(box, providersTable(items));
    newForm.preview();
  }

  function providersTable(items) {
    if (!items.length) return h('div.table-wrap', h('p.empty', 'No providers yet: users sign in with API tokens only.'));
    return h('div.table-wrap', h('table', {'aria-label': 'Sign-in providers'},
      thead('Provider', 'Kind', 'Serves', 'Callback URL', '~Restricted to', '~Updated', 'Actions'),
      h('tbody', items.map((p) => h('tr', {'data-provider': p.name},
        h('td', h('strong', p.displayName), h('div', h('small.muted.mono', p.name))),
        h('td', h('span.chip', KINDS[p.kind]?.label || p.kind),
          h('div', h('small.muted', p.url || KINDS[p.kind]?.host || ''))),
        h('td.serves', p.signIn ? h('span.chip', 'sign-in') : null, p.connect ? h('span.chip', 'connect accounts') : null),
        h('td', p.callbackUrl ? callbackRow(p.callbackUrl, p.name) : h('span.muted', '—')),
        h('td.hide-sm', restrictions(p)),
        h('td.hide-sm', when(p.updatedAt)),
        h('td', h('div.row',
          h('button.btn.small', {type: 'button', onclick: () => edit(p)}, 'Edit'),
          h('button.btn.small.danger', {type: 'button', onclick: () => remove(p)}, 'Delete'))))))));
  }

  async function edit(p) {
    const fields = providerFields(p, base);
    const ok = await formDialog(`Edit ${p.displayName}`, fields.el, 'Save', async () => {
      await put(path(p.name), fields.body());
    });
    if (ok) { toast(`${p.name} saved`, 'success'); load(); }
  }

  async function remove(p) {
    if (!(await confirm(`Delete ${p.name}?`,
      `Nobody can sign in with ${p.displayName} any more: the sessions it opened end and its links to users go (the users stay, with their tokens). ` +
      'Accounts connected through it keep their credential until its access token expires, then must be connected again.', 'Delete', 'danger'))) return;
    try {
      await del(path(p.name));
      toast(`${p.name} deleted`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    load();
  }

  const newForm = createForm(() => base, async (body) => {
    const p = await post('/auth/providers', body);
    toast(`${p.name} created: register its callback URL at the forge`, 'success');
    load();
  });

  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Sign-in providers'),
      h('div.sub', h('span', 'The OAuth applications of forges and the OpenID Connect providers users sign in with, and connect their forge accounts through (Credentials page).')))),
    box,
    h('p.hint', 'Register each callback URL at its forge, as the OAuth application\'s redirect URI. A provider the server\'s --sso-provider flags (or RUNNEL_SSO_PROVIDERS) name is written again from them at every start: change it there. Client secrets are stored encrypted and never shown.'),
    h('h2', 'New provider'),
    newForm.el));
  await load();
}

/** The callback URL with a copy button. */
function callbackRow(url, name) {
  return h('div.callback', h('code', url),
    h('button.btn.small', {type: 'button', 'aria-label': `Copy the callback URL of ${name}`, onclick: () => copy(url, 'Callback URL copied')}, 'Copy'));
}

function restrictions(p) {
  const orgs = p.allowedOrgs || [], domains = p.allowedDomains || [];
  if (!orgs.length && !domains.length) return h('span.muted', 'anyone');
  return [orgs.length ? h('div', h('small.muted', KINDS[p.kind]?.orgs || 'organisations'), ' ', orgs.map((o) => h('span.chip', o))) : null,
    domains.length ? h('div', h('small.muted', 'email'), ' ', domains.map((d) => h('span.chip', '@' + d))) : null];
}

/**
 * The fields of a provider: p is the stored one (an edit: the name stays,
 * an empty secret keeps the stored one) or null (a new provider); base is
 * the callback URLs' origin. {el, body(), preview(base)}: body() is the
 * request's body (on an edit, the fields that changed).
 */
function providerFields(p, base) {
  const isNew = !p;
  p = p || {kind: 'github', signIn: true, connect: true};
  const kind = h('select', {name: 'kind'}, Object.entries(KINDS).map(([k, d]) => h('option', {value: k, selected: k === p.kind}, d.label)));
  const name = h('input', {type: 'text', name: 'name', required: isNew, disabled: !isNew, value: p.name || '', pattern: PATTERNS.providerName,
    maxlength: 63, autocomplete: 'off', spellcheck: 'false'});
  const displayName = h('input', {type: 'text', name: 'displayName', maxlength: 100, autocomplete: 'off', value: isNew ? '' : p.displayName});
  const url = h('input', {type: 'text', name: 'url', inputmode: 'url', maxlength: 2048, autocomplete: 'off', spellcheck: 'false', value: p.url || ''});
  const clientId = h('input', {type: 'text', name: 'clientId', required: true, maxlength: 255, autocomplete: 'off', spellcheck: 'false', value: p.clientId || ''});
  const secret = h('input', {type: 'password', name: 'clientSecret', maxlength: 1024, autocomplete: 'new-password', spellcheck: 'false',
    placeholder: isNew ? '' : 'empty: keep the stored secret'});
  const scopes = h('input', {type: 'text', name: 'scopes', autocomplete: 'off', spellcheck: 'false', value: (p.scopes || []).join(' ')});
  const orgs = h('input', {type: 'text', name: 'allowedOrgs', autocomplete: 'off', spellcheck: 'false', value: (p.allowedOrgs || []).join(', ')});
  const domains = h('input', {type: 'text', name: 'allowedDomains', autocomplete: 'off', spellcheck: 'false', value: (p.allowedDomains || []).join(', '), placeholder: 'example.com'});
  const signIn = h('input', {type: 'checkbox', name: 'signIn', checked: p.signIn});
  const connect = h('input', {type: 'checkbox', name: 'connect', checked: p.connect});
  signIn.defaultChecked = p.signIn; // what a form reset goes back to
  connect.defaultChecked = p.connect;

  const hint = (text) => h('small.hint', text);
  const urlHint = hint(''), secretHint = hint(''), scopesHint = hint(''), orgsHint = hint(''), connectHint = hint(''), appHint = h('p.hint');
  // A field whose hint follows the kind.
  const hinted = (label, input, hintEl) => { const f = field(label, input); f.append(hintEl); return f; };
  const orgsField = hinted('Allowed organisations', orgs, orgsHint);
  const callback = h('div');

  // The kind decides the hints; oidc cannot connect accounts (the box is
  // off and disabled, and comes back as it was for a forge).
  let wanted = connect.checked;
  connect.addEventListener('change', () => { wanted = connect.checked; });
  const sync = () => {
    const d = KINDS[kind.value];
    if (isNew) { name.placeholder = kind.value; displayName.placeholder = 'Acme ' + d.label; }
    url.placeholder = d.host ? `empty: ${d.host}` : kind.value === 'oidc' ? 'https://accounts.example.com' : 'https://gitea.example.com';
    urlHint.textContent = d.url;
    secretHint.textContent = (isNew ? '' : 'Empty: keep the stored one. ') +
      (d.secretRequired ? `Required for ${d.label}.` : 'Optional for a public client (PKCE); give it when the application has one.') + ' Write-only: never shown.';
    scopesHint.textContent = 'Empty: the defaults, ' + d.scopes + '. Separated by spaces or commas.';
    orgsField.querySelector('label').textContent = 'Allowed ' + d.orgs.replace(/ \(.*/, '');
    orgsHint.textContent = `Empty: anyone with an account there. Else only members of one of these ${d.orgs}, separated by commas.`;
    appHint.textContent = `Register ${d.app}.`;
    connect.disabled = !d.connect;
    connect.checked = d.connect && wanted;
    connectHint.textContent = d.connect
      ? 'Signed-in users connect their account (Credentials page): Runnel lists their repositories, activates them as pipelines and reports commit statuses.'
      : 'Not available: an OpenID Connect provider signs users in only.';
  };
  kind.addEventListener('change', sync);

  const preview = (b = base) => {
    if (!isNew) return mount(callback, h('div.field', h('span.label', 'Callback URL'), p.callbackUrl ? callbackRow(p.callbackUrl, p.name) : h('span.muted', '—')));
    const n = name.value.trim();
    mount(callback, h('div.field', h('span.label', 'Callback URL'),
      n && name.checkValidity() ? callbackRow(b + CALLBACK(n), n) : h('span.muted', 'Give a name to see it.'),
      hint('Its origin is the server\'s --external-url, or the address of this page.')));
  };
  name.addEventListener('input', () => preview());
  sync();
  preview();

  const el = h('div.provider-fields',
    h('div.grid2',
      field('Kind', kind),
      field('Name', name, isNew ? 'Lower-case letters, digits, - and _; part of the callback URL, so it cannot change' : 'Part of the callback URL: it cannot change'),
      field('Display name', displayName, 'Shown as "Sign in with …" and "Connect …"; empty: the name'),
      hinted('URL', url, urlHint),
      field('Client id', clientId, 'The application\'s client id'),
      hinted('Client secret', secret, secretHint),
      hinted('Scopes', scopes, scopesHint),
      orgsField,
      field('Allowed email domains', domains, 'Empty: any. Else only users with a verified email address in one of these domains, separated by commas.')),
    h('div.field', h('label.row', signIn, 'Sign in'), hint('Users sign in to Runnel with it; the first sign-in of someone creates their user.')),
    h('div.field', h('label.row', connect, 'Connect accounts'), connectHint),
    callback,
    appHint);

  const body = () => {
    const v = {
      kind: kind.value, displayName: displayName.value.trim(), url: url.value.trim(), clientId: clientId.value.trim(),
      scopes: splitList(scopes.value, true), allowedOrgs: splitList(orgs.value), allowedDomains: splitList(domains.value, true),
      signIn: signIn.checked, connect: connect.checked,
    };
    if (isNew) {
      const b = {name: name.value.trim(), kind: v.kind, clientId: v.clientId, signIn: v.signIn, connect: v.connect};
      for (const k of ['displayName', 'url']) if (v[k]) b[k] = v[k];
      for (const k of ['scopes', 'allowedOrgs', 'allowedDomains']) if (v[k].length) b[k] = v[k];
      if (secret.value) b.clientSecret = secret.value;
      return b;
    }
    // An edit sends what changed; without clientSecret the stored one stays.
    const b = {};
    for (const k of ['kind', 'displayName', 'url', 'clientId', 'signIn', 'connect']) if (v[k] !== (p[k] ?? '')) b[k] = v[k];
    for (const k of ['scopes', 'allowedOrgs', 'allowedDomains']) if (v[k].join('\n') !== (p[k] || []).join('\n')) b[k] = v[k];
    if (secret.value) b.clientSecret = secret.value;
    return b;
  };
  const reset = () => { wanted = connect.defaultChecked; sync(); preview(); };
  return {el, body, preview, reset};
}

/** The form of a new provider; submit(body) creates it. */
function createForm(baseOf, submit) {
  const fields = providerFields(null, baseOf());
  const msg = h('div', {'aria-live': 'polite'});
  const button = h('button.btn.primary', {type: 'submit'}, 'Create provider');
  const form = h('form.card.provider-form', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      button.disabled = true;
      try {
        await submit(fields.body());
        form.reset();
        fields.reset();
      } catch (err) {
        mount(msg, errorBox(err));
      } finally {
        button.disabled = false;
      }
    },
  }, fields.el, msg, h('div.actions', button));
  return {el: form, preview: () => fields.preview(baseOf())};
}
