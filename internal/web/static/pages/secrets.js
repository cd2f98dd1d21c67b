// Secrets (values jobs read from their environment) and credentials (what git
// needs to fetch private repositories). Both are write-only: no answer of the
// API contains a value, so this page never shows one.

import {h, mount, when, toast, dialog, confirm, errorBox, copy, field, formDialog, thead} from '../lib/dom.js';
import {get, post, put, del, session} from '../lib/api.js';

import {CREDENTIAL_KINDS as KINDS, PATTERNS} from '../lib/forges.js';

const SECRET_NAME = PATTERNS.secretName;
const PROJECT_ID = PATTERNS.projectId;
const PIPELINE_ID = PATTERNS.pipelineId;

export default async function render(ctx) {
  if (ctx.view === 'credentials') return credentialsPage(ctx);
  return secretsPage(ctx);
}

function tabs(active) {
  return h('nav.tabs', {'aria-label': 'Secrets and credentials'},
    h('a', {href: '/secrets', 'aria-current': active === 'secrets' ? 'page' : null}, 'Secrets'),
    h('a', {href: '/credentials', 'aria-current': active === 'credentials' ? 'page' : null}, 'Credentials'));
}

// ======================= secrets =======================

// secretsTable lists secrets (never their values) with their actions.
function secretsTable(items, filtered, pipelineName, onReplace, onDelete) {
  if (!items.length) return h('div.table-wrap', h('p.empty', filtered ? 'No secrets match.' : 'No secrets yet.'));
  return h('div.table-wrap', h('table', {'aria-label': 'Secrets'},
    thead('Name', 'Scope', '~Created by', '~Updated', 'Actions'),
    h('tbody', items.map((s) => h('tr',
      h('td', h('code', s.name), h('div', h('small.muted.mono', s.secretId))),
      h('td',
        h('span.chip', s.scope),
        ' ',
        s.scope === 'pipeline'
          ? h('a', {href: `/pipelines/${encodeURIComponent(s.pipelineId)}`, title: s.pipelineId}, pipelineName(s.pipelineId) || s.pipelineId)
          : h('span', s.projectId)),
      h('td.hide-sm', s.createdBy || h('span.muted', '—')),
      h('td.hide-sm', when(s.updatedAt)),
      h('td', h('div.row',
        h('button.btn.small', {type: 'button', onclick: () => onReplace(s)}, 'Replace value'),
        h('button.btn.small.danger', {type: 'button', onclick: () => onDelete(s)}, 'Delete'))))))));
}

// secretForm creates a secret in a project or for one pipeline; the
// filter in use preselects the scope.
function secretForm(filter, pipelines, projectsList, pipelinesList, onCreated) {
  const name = h('input', {type: 'text', name: 'name', required: true, pattern: SECRET_NAME, maxlength: 128, autocomplete: 'off', spellcheck: 'false', placeholder: 'DEPLOY_TOKEN'});
  const val = valueInput('Value', true);
  const scope = h('select', {name: 'scope'},
    [['project', 'Project: every pipeline of the project'], ['pipeline', 'Pipeline: one pipeline only']]
      .map(([v, l]) => h('option', {value: v, selected: v === (filter.scope || 'project')}, l)));
  const projectId = h('input', {type: 'text', name: 'projectId', pattern: PROJECT_ID, maxlength: 100, autocomplete: 'off', spellcheck: 'false', list: projectsList.id, placeholder: 'demo'});
  const pipelineId = h('input', {type: 'text', name: 'pipelineId', pattern: PIPELINE_ID, autocomplete: 'off', spellcheck: 'false', list: pipelinesList.id, placeholder: 'pl_…'});
  if (filter.id) (filter.scope === 'pipeline' ? pipelineId : projectId).value = filter.id;
  const projectWrap = h('div', field('Project id', projectId, 'The project need not exist yet'));
  const pipelineWrap = h('div', field('Pipeline id', pipelineId, pipelines.length ? 'Type to pick from the pipelines' : 'The pipeline must exist'));
  const syncScope = () => {
    const p = scope.value === 'pipeline';
    projectWrap.hidden = p; pipelineWrap.hidden = !p;
    projectId.required = !p; pipelineId.required = p;
  };
  scope.addEventListener('change', syncScope);
  syncScope();
  const msg = h('div');
  const submit = h('button.btn.primary', {type: 'submit'}, 'Create secret');
  const form = h('form.card', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      const body = {name: name.value.trim(), value: val.value()};
      if (scope.value === 'pipeline') body.pipelineId = pipelineId.value.trim();
      else body.projectId = projectId.value.trim();
      submit.disabled = true;
      try {
        const s = await post('/secrets', body);
        name.value = '';
        val.clear();
        toast(`Secret ${s.name} created`, 'success');
        onCreated();
      } catch (err) {
        mount(msg, errorBox(err));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('div.grid2',
    field('Name', name, 'Letters, digits and _, not starting with a digit; used as ${{ secrets.NAME }}'),
    field('Scope', scope),
    projectWrap, pipelineWrap),
  val.el,
  h('p.hint', 'The value is stored encrypted and never shown again. At least 4 bytes (shorter values cannot be masked in logs).'),
  msg,
  h('div.actions', submit));
  return form;
}

async function secretsPage(ctx) {
  ctx.setTitle('Secrets');
  const q = ctx.query;
  let filter = {
    scope: ['project', 'pipeline'].includes(q.get('scope')) ? q.get('scope') : (q.get('pipelineId') ? 'pipeline' : q.get('projectId') ? 'project' : ''),
    id: q.get('pipelineId') || q.get('projectId') || '',
  };

  const pipelines = await loadPipelines();
  if (!ctx.current) return;

  // ---- filters ----
  const scopeSel = h('select', {name: 'scope'},
    [['', 'All secrets'], ['project', 'Project secrets'], ['pipeline', 'Pipeline secrets']]
      .map(([v, l]) => h('option', {value: v, selected: v === filter.scope}, l)));
  const idInput = h('input', {type: 'search', name: 'id', value: filter.id, autocomplete: 'off', spellcheck: 'false'});
  const idWrap = h('div', field('Project id', idInput));
  const pipelinesList = datalist(pipelines.map((p) => [p.pipelineId, `${p.name} (${p.projectId})`]));
  const projectsList = datalist([...new Set(pipelines.map((p) => p.projectId).filter(Boolean))].sort().map((p) => [p, '']));
  const syncFilterInputs = () => {
    const s = scopeSel.value;
    idWrap.hidden = !s;
    idWrap.querySelector('label').textContent = s === 'pipeline' ? 'Pipeline id (optional)' : 'Project id (optional)';
    idInput.setAttribute('list', s === 'pipeline' ? pipelinesList.id : projectsList.id);
    idInput.placeholder = s === 'pipeline' ? 'pl_…' : 'demo';
  };
  const filterForm = h('form.filters', {
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      filter = {scope: scopeSel.value, id: scopeSel.value ? idInput.value.trim() : ''};
      const qs = new URLSearchParams();
      if (filter.scope) qs.set('scope', filter.scope);
      if (filter.id) qs.set(filter.scope === 'pipeline' ? 'pipelineId' : 'projectId', filter.id);
      history.replaceState(null, '', '/secrets' + (qs.toString() ? '?' + qs : ''));
      load();
    },
  }, field('Show', scopeSel), idWrap, h('button.btn', {type: 'submit'}, 'Apply'));
  scopeSel.addEventListener('change', syncFilterInputs);
  syncFilterInputs();

  const listBox = h('div', h('p.loading', 'Loading secrets…'));

  async function load() {
    const params = {};
    if (filter.id && filter.scope === 'pipeline') params.pipelineId = filter.id;
    if (filter.id && filter.scope === 'project') params.projectId = filter.id;
    let list;
    try {
      list = await get('/secrets', params);
    } catch (err) {
      if (ctx.current) mount(listBox, errorBox(err));
      return;
    }
    if (!ctx.current) return;
    let items = list.items || [];
    if (filter.scope) items = items.filter((s) => s.scope === filter.scope);
    mount(listBox, secretsTable(items, !!(filter.scope || filter.id), pipelineName, replaceSecret, deleteSecret));
  }

  const pipelineName = (id) => pipelines.find((p) => p.pipelineId === id)?.name;

  async function replaceSecret(s) {
    const name = h('input', {type: 'text', value: s.name, required: true, pattern: SECRET_NAME, maxlength: 128, autocomplete: 'off', spellcheck: 'false'});
    const val = valueInput('New value', true);
    const ok = await formDialog(`Replace the value of ${s.name}`, [
      h('p.muted', 'The old value is replaced; jobs claimed from now on get the new one. Values are never shown again.'),
      field('Name', name, 'Change it to rename the secret'),
      val.el,
    ], 'Save', async () => {
      const body = {value: val.value()};
      if (name.value.trim() !== s.name) body.name = name.value.trim();
      await put(`/secrets/${encodeURIComponent(s.secretId)}`, body);
    });
    if (ok) { toast(`${s.name}: value replaced`, 'success'); load(); }
  }

  function deleteSecret(s) {
    return confirmDelete(s.name, `Jobs claimed from now on no longer get it (${s.scope} ${s.scope === 'pipeline' ? pipelineName(s.pipelineId) || s.pipelineId : s.projectId}).`,
      `/secrets/${encodeURIComponent(s.secretId)}`, load);
  }

  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Secrets'),
      h('div.sub', h('span', 'Named values jobs read from their environment. Values are write-only.')))),
    tabs('secrets'),
    pipelinesList, projectsList,
    filterForm,
    listBox,
    h('h2', 'New secret'),
    secretForm(filter, pipelines, projectsList, pipelinesList, load)));
  await load();
}

// ======================= credentials =======================

// credentialsTable lists credentials (never their tokens or keys) with their
// actions; project is the filter in use.
function credentialsTable(items, project, onReplace, onDelete) {
  if (!items.length) return h('div.table-wrap', h('p.empty', project ? `No credentials limited to ${project}.` : 'No credentials yet.'));
  return h('div.table-wrap', h('table', {'aria-label': 'Credentials'},
    thead('Name', 'Kind', 'Host', '~User name', '~Project', '~Updated', 'Actions'),
    h('tbody', items.map((c) => h('tr',
      h('td', h('strong', c.name),
        h('div.row', h('small.muted.mono', c.credentialId),
          h('button.link', {type: 'button', 'aria-label': `Copy the id of ${c.name}`, title: 'Copy the id (args.credential)', onclick: () => copy(c.credentialId, 'Id copied')}, 'copy'))),
      h('td', h('span.chip', c.kind)),
      h('td', c.host ? h('code', c.host) : h('span.muted', '—')),
      h('td.hide-sm', c.username ? h('code', c.username) : h('span.muted', '—')),
      h('td.hide-sm', c.projectId || h('span.muted', 'every pipeline')),
      h('td.hide-sm', when(c.updatedAt), c.createdBy ? h('div', h('small.muted', 'by ' + c.createdBy)) : null),
      h('td', h('div.row',
        FORGE_KINDS.includes(c.kind) ? h('a.btn.small', {href: repositoriesPath(c)}, 'Repositories') : null,
        h('button.btn.small', {type: 'button', onclick: () => onReplace(c)}, c.kind === 'ssh' ? 'Replace key' : 'Replace token'),
        h('button.btn.small.danger', {type: 'button', onclick: () => onDelete(c)}, 'Delete'))))))));
}

// credentialForm creates a credential; the kind sets which secret it takes
// (a token, or an SSH private key) and the defaults shown.
function credentialForm(projectsList, onCreated) {
  const name = h('input', {type: 'text', name: 'name', required: true, maxlength: 100, autocomplete: 'off', spellcheck: 'false', placeholder: 'gitlab-ci'});
  const kind = h('select', {name: 'kind'}, Object.entries(KINDS).map(([k, d]) => h('option', {value: k}, d.label)));
  const host = h('input', {type: 'text', name: 'host', autocomplete: 'off', spellcheck: 'false'});
  const username = h('input', {type: 'text', name: 'username', maxlength: 100, autocomplete: 'off', spellcheck: 'false'});
  const token = h('input', {type: 'password', name: 'accessToken', minlength: 4, maxlength: 4096, autocomplete: 'new-password', spellcheck: 'false'});
  const key = h('textarea', {name: 'privateKey', rows: 8, spellcheck: 'false', autocomplete: 'off', placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----'});
  const projectId = h('input', {type: 'text', name: 'projectId', pattern: PROJECT_ID, maxlength: 100, autocomplete: 'off', spellcheck: 'false', list: projectsList.id});
  const hostField = field('Host', host);
  const userField = field('User name', username);
  const tokenWrap = h('div', field('Access token', token, 'One line, 4 to 4096 bytes, no spaces. Write-only.'));
  const keyWrap = h('div', field('Private key', key, 'The whole OpenSSH or PEM key file, without a passphrase. Write-only.'));
  const setHint = (f, text) => {
    let hint = f.querySelector('.hint');
    if (!hint) f.append(hint = h('small.hint'));
    hint.textContent = text;
  };
  const syncKind = () => {
    const d = KINDS[kind.value];
    const ssh = kind.value === 'ssh';
    const needs = kind.value === 'gitea' || kind.value === 'basic';
    host.placeholder = d.host || (ssh ? 'optional' : 'git.example.com');
    username.placeholder = d.username || 'ci-bot';
    host.required = needs; username.required = needs;
    setHint(hostField, needs ? 'Required: host name with an optional :port, no scheme or path'
      : ssh ? 'Optional, for your information: the key goes to the host the checkout names'
        : `Default ${d.host}; give another for a self-hosted server`);
    setHint(userField, needs ? 'Required' : `Default ${d.username}`);
    tokenWrap.hidden = ssh; keyWrap.hidden = !ssh;
    token.required = !ssh; key.required = ssh;
  };
  kind.addEventListener('change', syncKind);
  syncKind();
  const msg = h('div');
  const submit = h('button.btn.primary', {type: 'submit'}, 'Create credential');
  const form = h('form.card', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      const ssh = kind.value === 'ssh';
      const body = {name: name.value.trim(), kind: kind.value};
      if (host.value.trim()) body.host = host.value.trim();
      if (username.value.trim()) body.username = username.value.trim();
      if (projectId.value.trim()) body.projectId = projectId.value.trim();
      if (ssh) body.privateKey = key.value; else body.accessToken = token.value.trim();
      submit.disabled = true;
      try {
        const c = await post('/credentials', body);
        form.reset();
        syncKind();
        toast(`Credential ${c.name} created (${c.credentialId})`, 'success');
        onCreated();
      } catch (err) {
        mount(msg, errorBox(err));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('div.grid2',
    field('Name', name, 'Letters, digits, spaces, . _ -; unique on the server'),
    field('Kind', kind),
    hostField, userField,
    field('Project id', projectId, 'Optional: only this project\'s pipelines may use it')),
  tokenWrap, keyWrap,
  msg,
  h('div.actions', submit));
  return form;
}

async function credentialsPage(ctx) {
  ctx.setTitle('Credentials');
  let projectFilter = ctx.query.get('projectId') || '';
  const pipelines = await loadPipelines();
  if (!ctx.current) return;
  const projectsList = datalist([...new Set(pipelines.map((p) => p.projectId).filter(Boolean))].sort().map((p) => [p, '']));

  const projectInput = h('input', {type: 'search', name: 'projectId', value: projectFilter, pattern: PROJECT_ID, autocomplete: 'off', spellcheck: 'false', list: projectsList.id, placeholder: 'every project'});
  const filterForm = h('form.filters', {
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      projectFilter = projectInput.value.trim();
      history.replaceState(null, '', '/credentials' + (projectFilter ? '?projectId=' + encodeURIComponent(projectFilter) : ''));
      load();
    },
  }, field('Limited to project', projectInput, 'Empty: every credential'), h('button.btn', {type: 'submit'}, 'Apply'));

  const listBox = h('div', h('p.loading', 'Loading credentials…'));

  async function load() {
    let list;
    try {
      list = await get('/credentials', {projectId: projectFilter});
    } catch (err) {
      if (ctx.current) { mount(listBox, errorBox(err)); accounts.failed(); }
      return;
    }
    if (!ctx.current) return;
    const items = list.items || [];
    mount(listBox, credentialsTable(items.filter((c) => !c.provider), projectFilter, replaceSecret, deleteCredential));
    // Connected accounts belong to no project: they come from the whole list.
    const all = projectFilter ? await get('/credentials').then((l) => l.items || [], () => items) : items;
    if (!ctx.current) return;
    accounts.draw(all.filter((c) => c.provider));
  }

  async function replaceSecret(c) {
    const ssh = c.kind === 'ssh';
    const input = ssh
      ? h('textarea', {rows: 8, required: true, spellcheck: 'false', autocomplete: 'off', placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----'})
      : h('input', {type: 'password', required: true, minlength: 4, maxlength: 4096, autocomplete: 'new-password', spellcheck: 'false'});
    const ok = await formDialog(`Replace the ${ssh ? 'private key' : 'token'} of ${c.name}`, [
      h('p.muted', 'Jobs claimed from now on get the new one. It is stored encrypted and never shown again.'),
      field(ssh ? 'New private key' : 'New access token', input, ssh ? 'The whole key file, without a passphrase' : 'One line, 4 to 4096 bytes, no spaces'),
    ], 'Save', async () => {
      const v = ssh ? input.value : input.value.trim();
      await put(`/credentials/${encodeURIComponent(c.credentialId)}`, ssh ? {privateKey: v} : {accessToken: v});
    });
    if (ok) { toast(`${c.name}: ${ssh ? 'key' : 'token'} replaced`, 'success'); load(); }
  }

  function deleteCredential(c) {
    return confirmDelete(c.name, 'Jobs claimed from now on no longer get it; checkouts and image builds that name it fail.',
      `/credentials/${encodeURIComponent(c.credentialId)}`, load);
  }

  const accounts = connectedAccounts(ctx, () => load());

  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Credentials'),
      h('div.sub', h('span', 'Tokens and SSH keys git uses to fetch private repositories (args.credential of actions/git-checkout@v1, or an image repository\'s source). Write-only.')))),
    tabs('credentials'),
    accounts.el,
    h('h2', 'Credentials'),
    projectsList,
    filterForm,
    listBox,
    h('h2', 'New credential'),
    credentialForm(projectsList, load)));
  await load();
}

// ======================= connected accounts =======================

// connectedAccounts is the section of forge accounts connected through a
// provider's OAuth application (credentials with a provider): a button per
// provider that connects (a redirect to the forge and back here with
// ?connected=ID), and the accounts with their repositories and Disconnect.
// {el, draw(accounts)}.
function connectedAccounts(ctx, reload) {
  const notice = h('div', {'aria-live': 'polite'});
  const buttons = h('div.row.connect-buttons');
  const list = h('div', h('p.loading', 'Loading connected accounts…'));
  const connected = ctx.query.get('connected');
  if (connected) {
    // Shown once: the address loses the parameter.
    const q = new URLSearchParams(ctx.query);
    q.delete('connected');
    history.replaceState(null, '', '/credentials' + (q.toString() ? '?' + q : ''));
  }
  get('/auth/providers').then((res) => {
    if (!ctx.current) return;
    const ps = (res.items || []).filter((p) => p.connect && p.connectUrl);
    mount(buttons, ps.length
      ? ps.map((p) => h('a.btn.primary', {href: `${p.connectUrl}?returnTo=${encodeURIComponent('/credentials')}`, 'data-provider': p.name,
        title: `Sign in at ${p.displayName} and allow Runnel to list your repositories and manage their webhooks`}, 'Connect ' + p.displayName))
      : h('p.muted', session.isAdmin ? ['No provider connects accounts yet: set one up on the ', h('a', {href: '/providers'}, 'Sign-in providers'), ' page.']
        : 'No provider connects accounts yet: ask a site admin to set one up.'));
  }).catch((e) => { if (ctx.current) mount(buttons, errorBox(e)); });

  const disconnect = async (c) => {
    if (!(await confirm(`Disconnect ${c.loginName || c.name}?`,
      `The ${c.provider} account's token is deleted from Runnel. Pipelines activated with it can no longer read their repository, manage its webhook or report commit statuses until another account is set. The authorization stays listed at the forge, where you can revoke it.`,
      'Disconnect', 'danger'))) return;
    try {
      await del(`/credentials/${encodeURIComponent(c.credentialId)}`);
      toast(`${c.loginName || c.name} disconnected`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    reload();
  };

  const draw = (items) => {
    if (connected) {
      const c = items.find((x) => x.credentialId === connected);
      mount(notice, c
        ? h('div.alert.success', {role: 'status'}, h('strong', `Connected ${c.provider} account ${c.loginName || c.name}.`), ' ',
          h('a', {href: repositoriesPath(c)}, 'Choose a repository to activate'), '.')
        : h('div.alert.warn', {role: 'status'}, `Connected account ${connected} is not in your list.`));
    }
    mount(list, !items.length ? h('p.muted.none', 'No account connected yet.')
      : h('div.table-wrap', h('table', {'aria-label': 'Connected accounts'},
        thead('Account', 'Provider', '~Connected', '~Token expires', 'Actions'),
        h('tbody', items.map((c) => h('tr', {'data-credential': c.credentialId},
          h('td', h('div.account', avatar(c), h('div',
            h('strong', c.loginName || c.name),
            h('div', h('small.muted.mono', c.credentialId))))),
          h('td', h('span.chip', c.provider), c.host ? h('div', h('small.muted', c.host)) : null),
          h('td.hide-sm', when(c.createdAt), c.createdBy ? h('div', h('small.muted', 'by ' + c.createdBy)) : null),
          h('td.hide-sm', c.expiresAt ? when(c.expiresAt) : h('span.muted', 'never'), c.expiresAt ? h('div', h('small.muted', 'renewed before')) : null),
          h('td', h('div.row',
            h('a.btn.small', {href: repositoriesPath(c)}, 'Repositories'),
            h('button.btn.small.danger', {type: 'button', onclick: () => disconnect(c)}, 'Disconnect')))))))));
  };

  const el = h('section.connected', {'aria-labelledby': 'connected-accounts'},
    h('h2#connected-accounts', 'Connected accounts'),
    h('p.hint', 'Forge accounts you connected: Runnel lists their repositories, activates one as a pipeline (creating its webhook) and reports commit statuses with them.'),
    notice, buttons, list);
  return {el, draw, failed: () => mount(list, h('p.muted', 'The accounts could not be listed (see below).'))};
}

// Kinds whose forge lists repositories for a token.
const FORGE_KINDS = ['github', 'gitlab', 'gitea', 'bitbucket'];

const repositoriesPath = (c) => `/credentials/${encodeURIComponent(c.credentialId)}/repositories`;

/**
 * The account's picture. The CSP lets images come from this server only,
 * so a forge's avatar address (another origin) shows as the login's
 * initial instead.
 */
export function avatar(c) {
  const name = c.loginName || c.name || '?';
  if (c.avatarUrl && c.avatarUrl.startsWith('/') && !c.avatarUrl.startsWith('//')) {
    return h('img.avatar', {src: c.avatarUrl, alt: '', width: 28, height: 28});
  }
  return h('span.avatar', {'aria-hidden': 'true'}, name.slice(0, 1).toUpperCase());
}

// ======================= helpers =======================

/** Pipelines for pickers (first 100); [] when the list cannot be read. */
async function loadPipelines() {
  try {
    const list = await get('/pipelines', {pageSize: 100});
    return list?.items || [];
  } catch {
    return [];
  }
}

function datalist(options) {
  const id = 'dl' + Math.random().toString(36).slice(2, 9);
  return h('datalist', {id}, options.map(([v, l]) => h('option', {value: v}, l || null)));
}

/**
 * A secret value: a password input, or (checkbox) a textarea for multi-line
 * values. {el, value(), clear()}.
 */
function valueInput(label, required) {
  const one = h('input', {type: 'password', required, minlength: 4, autocomplete: 'new-password', spellcheck: 'false'});
  const multi = h('textarea', {rows: 6, spellcheck: 'false', autocomplete: 'off'});
  const multiWrap = h('div', field(label + ' (multi-line)', multi));
  const oneWrap = h('div', field(label, one));
  const toggle = h('input', {type: 'checkbox'});
  multiWrap.hidden = true;
  toggle.addEventListener('change', () => {
    const m = toggle.checked;
    if (m) multi.value = one.value; else one.value = multi.value.split('\n')[0];
    oneWrap.hidden = m; multiWrap.hidden = !m;
    one.required = required && !m; multi.required = required && m;
    (m ? multi : one).focus();
  });
  const el = h('div', oneWrap, multiWrap, h('div.field', h('label.row', toggle, 'Multi-line value (shown as you type)')));
  return {
    el,
    value: () => (toggle.checked ? multi.value : one.value),
    clear: () => { one.value = ''; multi.value = ''; },
  };
}

/** Asks, deletes path, says so, then reloads the list (also after a failure). */
async function confirmDelete(name, consequence, path, reload) {
  if (!(await confirm(`Delete ${name}?`, consequence, 'Delete', 'danger'))) return;
  try {
    await del(path);
    toast(`${name} deleted`, 'success');
  } catch (err) {
    toast(err.message, 'error');
  }
  reload();
}
