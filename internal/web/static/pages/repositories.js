// The repositories a forge credential reaches (a connected account, or a
// hand-made token of a forge kind): searched and paged at the forge, with
// the account's permission on each, and Activate: a pipeline of the
// repository, its webhook created on the forge (POST
// /api/v1/repositories/activate; it needs admin permission there).

import {h, mount, when, toast, errorBox, field, formDialog, thead, debounce} from '../lib/dom.js';
import {get, post, session} from '../lib/api.js';
import {PATTERNS} from '../lib/forges.js';
import {avatar} from './secrets.js';

const NEED_ADMIN = 'activation needs admin permission on the repository';

export default async function render(ctx) {
  const id = ctx.params.credentialId;
  const cred = await get(`/credentials/${encodeURIComponent(id)}`);
  if (!ctx.current) return;
  const who = cred.loginName || cred.name;
  ctx.setTitle(`Repositories of ${who}`);

  let page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const search = h('input', {type: 'search', name: 'search', value: ctx.query.get('search') || '', placeholder: 'Search repositories',
    'aria-label': 'Search repositories', maxlength: 200, autocomplete: 'off', spellcheck: 'false'});
  const refreshBtn = h('button.btn', {type: 'button', title: 'Ask the forge again (the list is kept for a while)', onclick: () => load(true)}, '↻ Refresh');
  const status = h('span.muted.listed', {'aria-live': 'polite'});
  const body = h('div', h('p.loading', 'Loading repositories…'));
  let seq = 0;

  const load = async (refresh = false) => {
    const my = ++seq;
    const q = new URLSearchParams();
    if (search.value.trim()) q.set('search', search.value.trim());
    if (page > 1) q.set('page', page);
    history.replaceState(null, '', location.pathname + (q.toString() ? '?' + q : ''));
    refreshBtn.disabled = true;
    mount(status, refresh ? 'Asking the forge…' : 'Loading…');
    let res;
    try {
      res = await get(`/credentials/${encodeURIComponent(id)}/repositories`, {search: search.value.trim(), page: page > 1 ? page : '', refresh: refresh ? 'true' : ''});
    } catch (e) {
      if (ctx.current && my === seq) { mount(status); mount(body, errorBox(e)); refreshBtn.disabled = false; }
      return;
    }
    if (!ctx.current || my !== seq) return;
    refreshBtn.disabled = false;
    mount(status, res.fetchedAt ? ['listed by the forge ', when(res.fetchedAt)] : null);
    const items = res.items || [];
    mount(body,
      !items.length ? h('div.card.empty', search.value.trim() ? 'No repository matches.' : `${who} reaches no repository.`)
        : h('div.table-wrap', h('table', {'aria-label': 'Repositories'},
          thead('Repository', 'Visibility', 'Permissions', '~Language', '~Default branch', 'Actions'),
          h('tbody', items.map((r) => row(r))))),
      page > 1 || res.nextPage ? h('nav.pager', {'aria-label': 'Pages'},
        h('button.btn.small', {type: 'button', disabled: page <= 1, onclick: () => { page -= 1; load(); }}, '‹ Previous'),
        h('span', `page ${page}`),
        h('button.btn.small', {type: 'button', disabled: !res.nextPage, onclick: () => { page = res.nextPage; load(); }}, 'Next ›')) : null);
  };

  const row = (r) => {
    const perms = ['pull', 'push', 'admin'].filter((k) => r.permissions?.[k]);
    const can = !!r.permissions?.admin;
    const btn = h('button.btn.small.primary', {type: 'button', disabled: !can, 'data-activate': r.fullName,
      title: can ? `Make a pipeline of ${r.fullName} and create its webhook` : NEED_ADMIN, onclick: () => activate(r)}, 'Activate');
    return h('tr', {'data-repo': r.fullName},
      h('td', /^https?:\/\//.test(r.url || '') ? h('a', {href: r.url, target: '_blank', rel: 'noopener noreferrer'}, r.fullName) : h('span', r.fullName)),
      h('td', h('span.chip', r.private ? 'private' : 'public')),
      h('td.perms', perms.length ? perms.map((k) => h('span.chip', k)) : h('span.muted', 'none')),
      h('td.hide-sm', r.language || h('span.muted', '—')),
      h('td.hide-sm', r.defaultBranch ? h('code', r.defaultBranch) : h('span.muted', '—')),
      // A disabled button shows no tooltip in every browser: its wrapper does.
      h('td', can ? btn : h('span.why', {title: NEED_ADMIN}, btn, h('span.sr-only', ` (${NEED_ADMIN})`))));
  };

  async function activate(r) {
    let projects = [];
    try { projects = (await get('/projects')).items || []; } catch { /* the text field still works */ }
    if (!ctx.current) return;
    // Activating makes a pipeline: the maintainer role in the project.
    const usable = projects.filter((p) => session.me?.role === 'admin' || ['maintainer', 'owner'].includes(p.role));
    const other = h('input', {type: 'text', name: 'projectId', pattern: PATTERNS.projectId, maxlength: 100, autocomplete: 'off', spellcheck: 'false', placeholder: 'demo'});
    const otherWrap = h('div', field('Project id', other, 'You need the maintainer role in it.'));
    let select = null;
    if (usable.length) {
      select = h('select', {name: 'project'},
        usable.map((p) => h('option', {value: p.projectId}, p.name && p.name !== p.projectId ? `${p.name} (${p.projectId})` : p.projectId)),
        h('option', {value: ''}, 'Another project…'));
      const sync = () => { otherWrap.hidden = select.value !== ''; other.required = select.value === ''; };
      select.addEventListener('change', sync);
      sync();
    } else {
      other.required = true;
    }
    const name = h('input', {type: 'text', name: 'name', maxlength: 100, autocomplete: 'off', spellcheck: 'false', placeholder: r.fullName.split('/').pop()});
    const file = h('input', {type: 'text', name: 'pipelineFilePath', maxlength: 500, autocomplete: 'off', spellcheck: 'false', placeholder: '.runnel/pipeline.yaml'});
    let made = null;
    const ok = await formDialog(`Activate ${r.fullName}`, [
      h('p.muted', `A pipeline reads its definition from ${r.defaultBranch || 'the default branch'} of ${r.fullName}; a webhook on the forge starts runs on pushes, tags and pull requests, and runs report their status on the commits.`),
      select ? field('Project', select, 'The pipeline goes in this project.') : null,
      otherWrap,
      h('div.grid2',
        field('Pipeline name', name, 'Default: the repository\'s name'),
        field('Definition file', file, 'Default: .runnel/pipeline.yaml')),
    ], 'Activate', async () => {
      const b = {credentialId: id, fullName: r.fullName, projectId: select?.value || other.value.trim()};
      if (name.value.trim()) b.name = name.value.trim();
      if (file.value.trim()) b.pipelineFilePath = file.value.trim();
      made = await post('/repositories/activate', b);
    });
    if (!ok || !made) return;
    toast(`${r.fullName} activated: webhook ${made.repository?.webhookState || 'created'}`, 'success');
    await session.load().catch(() => {}); // a new project gives a new role
    ctx.navigate(`/pipelines/${encodeURIComponent(made.pipelineId)}`);
  }

  const typed = debounce(() => { page = 1; load(); }, 300);
  search.addEventListener('input', typed);
  ctx.onCleanup(() => typed.cancel());

  mount(ctx.main, h('section.page',
    h('div.crumbs', h('a', {href: '/credentials'}, 'Credentials'), ' / ', who),
    h('div.page-head',
      h('div.title', h('h1', 'Repositories'),
        h('div.sub',
          h('span.account', avatar(cred), h('strong', who)),
          h('span.chip', cred.provider || cred.kind),
          cred.host ? h('code', cred.host) : null)),
      h('div.row', refreshBtn)),
    h('p.hint', 'The repositories this account reaches, with its permission on each. Activating one needs admin permission on it (to create its webhook) and the maintainer role in the project the pipeline goes in.'),
    h('div.filters', {role: 'search'}, search, status),
    body));
  await load();
}
