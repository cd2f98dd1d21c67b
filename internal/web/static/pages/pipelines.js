// Pipelines: the list, the create and settings forms, and a pipeline's page
// (its runs, a trigger form built from the definition's variables, the
// webhook).

import {h, mount, badge, when, span, field, toast, dialog, confirm, errorBox, debounce, copy} from '../lib/dom.js';
import {get, post, put, del, ApiError, session} from '../lib/api.js';
import {subscribe} from '../lib/live.js';

export default function render(ctx) {
  return {list, create, detail, settings}[ctx.view](ctx);
}

const PAGE = 25;

async function list(ctx) {
  ctx.setTitle('Pipelines');
  const q = ctx.query;
  const search = h('input', {type: 'search', name: 'name', placeholder: 'Search pipelines by name', value: q.get('name') || '', 'aria-label': 'Search pipelines by name'});
  const project = h('input', {type: 'text', name: 'projectId', placeholder: 'Project', value: q.get('projectId') || '', 'aria-label': 'Project', size: 14});
  const body = h('div', h('p.loading', 'Loading…'));
  let page = Number(q.get('page')) || 1;
  const unsubs = new Map();
  ctx.onCleanup(() => { for (const u of unsubs.values()) u(); });

  const load = async () => {
    const params = {name: search.value.trim(), projectId: project.value.trim(), page, pageSize: PAGE};
    const url = new URLSearchParams(Object.entries(params).filter(([k, v]) => v && !(k === 'page' && v === 1) && k !== 'pageSize'));
    history.replaceState(null, '', '/pipelines' + (url.toString() ? '?' + url : ''));
    let res;
    try {
      res = await get('/pipelines', params);
    } catch (e) {
      if (ctx.current) mount(body, errorBox(e));
      return;
    }
    if (!ctx.current) return;
    // Live: any run event of a shown project refreshes the list.
    for (const p of new Set(res.items.map((p) => p.projectId))) {
      if (!unsubs.has(p)) unsubs.set(p, subscribe('status', {projectId: p}, (m) => { if (m.type === 'run.status') refresh(); }));
    }
    if (!res.items.length) {
      mount(body, h('div.card.empty', search.value || project.value ? 'No pipeline matches.' : h('span', 'No pipelines yet. ', h('a', {href: '/pipelines/new'}, 'Create the first one'), '.')));
      return;
    }
    mount(body,
      h('div.table-wrap', h('table',
        h('thead', h('tr', h('th', 'Pipeline'), h('th', 'Last run'), h('th.hide-sm', 'Started'), h('th.hide-sm', 'Duration'), h('th.hide-sm', 'Next start'), h('th.hide-sm', 'Cron'))),
        h('tbody', res.items.map((p) => h('tr',
          h('td', h('a', {href: `/pipelines/${p.pipelineId}`}, p.name), h('div.muted', p.projectId, p.description ? ' · ' + p.description : '')),
          h('td', p.lastExecutionId ? h('a', {href: `/runs/${p.lastExecutionId}`, 'aria-label': `last run: ${p.lastRunState}`}, badge(p.lastRunState)) : h('span.muted', 'never run')),
          h('td.hide-sm', when(p.lastStarted)),
          h('td.hide-sm.num', p.lastStarted ? span(p.lastStarted, p.lastEnded) : ''),
          h('td.hide-sm', when(p.nextStart)),
          h('td.hide-sm', p.triggerCronExpression ? h('code', p.triggerCronExpression) : '', p.triggerTimezone ? h('div.muted', p.triggerTimezone) : null)))))),
      pager(res, (n) => { page = n; load(); }));
  };
  const refresh = debounce(load, 500);
  const typed = debounce(() => { page = 1; load(); }, 250);
  search.addEventListener('input', typed);
  project.addEventListener('input', typed);
  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Pipelines')), h('a.btn.primary', {href: '/pipelines/new'}, '+ New pipeline')),
    h('div.filters', {role: 'search'}, search, project),
    body));
  await load();
}

export function pager(res, go) {
  const pages = Math.max(1, Math.ceil(res.total / res.pageSize));
  if (pages <= 1) return null;
  return h('nav.pager', {'aria-label': 'Pages'},
    h('button.btn.small', {type: 'button', disabled: res.page <= 1, onclick: () => go(res.page - 1)}, '‹ Newer'),
    h('span', `page ${res.page} of ${pages} · ${res.total} in all`),
    h('button.btn.small', {type: 'button', disabled: res.page >= pages, onclick: () => go(res.page + 1)}, 'Older ›'));
}

// ---- create and settings ----

function pipelineForm(p, onSubmit, submitLabel) {
  const inp = (name, attrs = {}) => h('input', {name, value: p?.[name] ?? '', ...attrs});
  const f = {
    projectId: inp('projectId', {required: true, placeholder: 'demo', disabled: !!p}),
    name: inp('name', {required: true, placeholder: 'build and test'}),
    description: inp('description'),
    repoUrl: inp('repoUrl', {placeholder: 'https://git.example.com/team/app.git', type: 'text'}),
    defaultBranch: inp('defaultBranch', {placeholder: 'main'}),
    pipelineFilePath: inp('pipelineFilePath', {placeholder: '.runnel/pipeline.yaml'}),
    saveMode: h('select', {name: 'saveMode'}, ['direct', 'pr'].map((m) => h('option', {value: m, selected: (p?.saveMode || 'direct') === m}, m === 'pr' ? 'pull request' : 'direct commit'))),
    prTargetBranch: inp('prTargetBranch', {placeholder: 'main'}),
    credentialId: inp('credentialId', {placeholder: 'cred_… (for a private repository)', list: 'credential-list'}),
    triggerCronExpression: inp('triggerCronExpression', {placeholder: '0 4 * * *', spellcheck: 'false'}),
    triggerTimezone: inp('triggerTimezone', {placeholder: Intl.DateTimeFormat().resolvedOptions().timeZone, list: 'tz-list'}),
  };
  const creds = h('datalist#credential-list');
  get('/credentials').then((res) => mount(creds, (res.items || []).map((c) => h('option', {value: c.credentialId}, `${c.name} (${c.kind})`)))).catch(() => {});
  const tzs = h('datalist#tz-list', (Intl.supportedValuesOf?.('timeZone') || []).map((z) => h('option', {value: z})));
  const msg = h('div');
  const form = h('form.card', {
    onsubmit: async (e) => {
      e.preventDefault();
      const body = {};
      for (const [k, el] of Object.entries(f)) if (!el.disabled) body[k] = el.value.trim();
      mount(msg);
      const btn = form.querySelector('button[type=submit]');
      btn.disabled = true;
      try {
        await onSubmit(body);
      } catch (err) {
        mount(msg, errorBox(err));
      } finally {
        btn.disabled = false;
      }
    },
  },
  h('div.grid2',
    field('Project', f.projectId, p ? 'A pipeline stays in its project.' : 'Groups pipelines; secrets and credentials can be limited to it.'),
    field('Name', f.name),
    field('Description', f.description)),
  h('h2', 'Repository'),
  h('p.hint', 'Optional. With a repository, the definition is read from (and saved to) the file on the default branch; without, it is stored by Runnel.'),
  h('div.grid2',
    field('Repository URL', f.repoUrl),
    field('Default branch', f.defaultBranch),
    field('Definition file', f.pipelineFilePath),
    field('Credential', f.credentialId, 'Id of a source-code credential.'),
    field('Saving the definition', f.saveMode),
    field('Pull request target', f.prTargetBranch)),
  h('h2', 'Schedule'),
  h('div.grid2',
    field('Cron expression', f.triggerCronExpression, 'Five fields (minute hour day month weekday); empty for none.'),
    field('Time zone', f.triggerTimezone, 'IANA name; default UTC.')),
  creds, tzs, msg,
  h('div.actions', h('button.btn.primary', {type: 'submit'}, submitLabel)));
  return form;
}

async function create(ctx) {
  ctx.setTitle('New pipeline');
  mount(ctx.main, h('section.page',
    h('div.crumbs', h('a', {href: '/pipelines'}, 'Pipelines'), ' / new'),
    h('div.page-head', h('div.title', h('h1', 'New pipeline'))),
    pipelineForm(null, async (body) => {
      const p = await post('/pipelines', body);
      toast(`Pipeline ${p.name} created`, 'success');
      ctx.navigate(p.repoUrl ? `/pipelines/${p.pipelineId}` : `/pipelines/${p.pipelineId}/definition`);
    }, 'Create pipeline')));
  ctx.main.querySelector('input[name=projectId]').focus();
}

function tabs(p, active) {
  const t = (href, label, key) => h('a', {href, 'aria-current': active === key ? 'page' : null}, label);
  return h('nav.tabs', {'aria-label': 'Pipeline'},
    t(`/pipelines/${p.pipelineId}`, 'Runs', 'runs'),
    t(`/pipelines/${p.pipelineId}/definition`, 'Definition', 'definition'),
    t(`/pipelines/${p.pipelineId}/settings`, 'Settings', 'settings'),
    p.headVersion || p.repoUrl ? h('a.export', {href: `/api/v1/pipelines/${p.pipelineId}/export`, download: '', title: 'Download the definition as a YAML file'}, 'Export YAML') : null);
}

export function pipelineHead(p, active, actions) {
  return [
    h('div.crumbs', h('a', {href: '/pipelines'}, 'Pipelines'), ' / ', p.projectId),
    h('div.page-head',
      h('div.title', h('h1', p.name),
        h('div.sub',
          p.description ? h('span', p.description) : null,
          p.repoUrl ? h('span', 'repo ', h('code', p.repoUrl), p.defaultBranch ? ` @ ${p.defaultBranch}` : '') : null,
          p.triggerCronExpression ? h('span', 'cron ', h('code', p.triggerCronExpression), ` ${p.triggerTimezone || 'UTC'}`, p.nextStart ? [' · next ', when(p.nextStart)] : '') : null)),
      actions),
    tabs(p, active),
  ];
}

async function detail(ctx) {
  const id = ctx.params.pipelineId;
  const p = await get(`/pipelines/${id}`);
  if (!ctx.current) return;
  ctx.setTitle(p.name);
  const status = h('select', {name: 'status', 'aria-label': 'Filter runs by status'},
    ['', 'pending', 'running', 'paused', 'success', 'failed', 'cancelled'].map((s) => h('option', {value: s, selected: ctx.query.get('status') === s}, s || 'all statuses')));
  const body = h('div', h('p.loading', 'Loading…'));
  let page = 1;
  const load = async () => {
    let res;
    try {
      res = await get(`/pipelines/${id}/runs`, {status: status.value, page, pageSize: PAGE});
    } catch (e) {
      if (ctx.current) mount(body, errorBox(e));
      return;
    }
    if (!ctx.current) return;
    if (!res.items.length) {
      mount(body, h('div.card.empty', status.value ? `No ${status.value} runs.` : 'No runs yet.'));
      return;
    }
    mount(body, h('div.table-wrap', h('table',
      h('thead', h('tr', h('th', 'Run'), h('th', 'Status'), h('th.hide-sm', 'Trigger'), h('th.hide-sm', 'Commit'), h('th', 'Started'), h('th', 'Duration'))),
      h('tbody', res.items.map((r) => h('tr',
        h('td', h('a', {href: `/runs/${r.runId}`}, `#${r.number}`)),
        h('td', badge(r.status, r.reason)),
        h('td.hide-sm', r.triggerType, r.triggeredBy ? h('div.muted', r.triggeredBy) : null),
        h('td.hide-sm', r.commit ? h('code', r.commit.slice(0, 10)) : ''),
        h('td', when(r.startedAt || r.createdAt)),
        h('td.num', span(r.startedAt, r.endedAt))))))),
    pager(res, (n) => { page = n; load(); }));
  };
  const refresh = debounce(load, 400);
  status.addEventListener('change', () => {
    page = 1;
    history.replaceState(null, '', `/pipelines/${id}` + (status.value ? `?status=${status.value}` : ''));
    load();
  });
  ctx.onCleanup(subscribe('status', {pipelineId: id}, (m) => { if (m.type === 'run.status' || m.type === 'reconnected') refresh(); }));
  // Viewers see runs; developers start them.
  const runBtn = session.may(p.projectId, 'developer') ? h('button.btn.primary', {type: 'button', onclick: () => triggerDialog(ctx, p)}, '▶ Run') : null;
  mount(ctx.main, h('section.page', pipelineHead(p, 'runs', h('div.row', runBtn)), repositoryPanel(ctx, p), h('div.filters', status), body));
  await load();
}

// ---- the forge repository ----

const HOOK_STATES = {
  active: ['✓', 'the forge delivers pushes, tags and pull requests'],
  missing: ['⚠', 'the hook is gone from the forge (deleted there?): no event arrives until it is repaired'],
  none: ['–', 'no webhook: no event arrives'],
};

/**
 * The pipeline's forge repository and the webhook Runnel keeps there
 * (pipeline.repository), and whether the pipeline is active: Check asks the
 * forge (viewers may), Repair recreates a lost hook, Deactivate removes it
 * and stops cron and webhook runs, Activate undoes that (maintainers).
 */
function repositoryPanel(ctx, p) {
  const el = h('div.repo-panel');
  const may = session.may(p.projectId, 'maintainer');
  const msg = h('div', {'aria-live': 'polite'});
  let busy = false;
  const act = async (label, fn) => {
    if (busy) return;
    busy = true;
    for (const b of el.querySelectorAll('button')) b.disabled = true;
    mount(msg);
    try {
      const np = await fn();
      if (!ctx.current) return;
      Object.assign(p, {active: np.active, repository: np.repository || null});
      draw();
      toast(typeof label === 'function' ? label(np) : label, 'success');
    } catch (e) {
      // What happened may be half done (a deactivation whose forge did not
      // answer): show the pipeline as it now is, and the API's words.
      const now = await get(`/pipelines/${p.pipelineId}`).catch(() => null);
      if (!ctx.current) return;
      if (now) Object.assign(p, {active: now.active, repository: now.repository || null});
      draw();
      mount(msg, errorBox(e));
    } finally {
      busy = false;
    }
  };
  const check = () => act((np) => `Webhook checked: ${np.repository?.webhookState || 'none'}`, () => get(`/pipelines/${p.pipelineId}/webhook`));
  const repair = () => act('Webhook repaired', () => post(`/pipelines/${p.pipelineId}/webhook/repair`));
  const activate = () => act('Pipeline activated', () => post(`/pipelines/${p.pipelineId}/activate`));
  const deactivate = async () => {
    const where = p.repository ? ` The webhook is removed from ${p.repository.fullName}.` : '';
    if (!await confirm(`Deactivate ${p.name}?`, `Cron and webhooks start no runs until you activate it again.${where} Its runs stay, and runs started by hand still start.`, 'Deactivate', 'danger')) return;
    act('Pipeline deactivated', () => post(`/pipelines/${p.pipelineId}/deactivate`));
  };

  const draw = () => {
    const r = p.repository;
    const off = p.active === false;
    const state = r ? (HOOK_STATES[r.webhookState] ? r.webhookState : 'none') : '';
    const [icon, meaning] = HOOK_STATES[state] || [];
    const btns = [
      r ? h('button.btn.small', {type: 'button', 'data-action': 'check', onclick: check, title: 'Ask the forge whether the hook is still there'}, 'Check') : null,
      // Deactivated, the hook is gone on purpose: Activate makes it again.
      r && may && !off ? h('button.btn.small', {type: 'button', 'data-action': 'repair', onclick: repair, title: 'Create the hook again when it is missing'}, 'Repair') : null,
      may && off ? h('button.btn.small.primary', {type: 'button', 'data-action': 'activate', onclick: activate}, 'Activate') : null,
      may && !off && r ? h('button.btn.small.danger', {type: 'button', 'data-action': 'deactivate', onclick: deactivate}, 'Deactivate') : null,
    ];
    mount(el,
      off ? h('div.alert.warn.deactivated', {role: 'status'}, h('strong', 'Deactivated: cron and webhooks start no runs.'),
        ' Runs started by hand still start.', !r && may ? [' ', btns[2]] : null) : null,
      r ? h('section.card.repo', {'aria-label': 'Repository'},
        h('div.repo-top',
          h('h2', 'Repository'),
          h('span.chip', r.kind), r.provider && r.provider !== r.kind ? h('span.chip', r.provider) : null,
          h('strong.mono', r.fullName),
          h('div.spacer'),
          h('div.row', btns)),
        h('dl.kv',
          h('dt', 'webhook'), h('dd.hook-state', h(`span.badge.hook-${state}`, {title: meaning}, h('span.icon', {'aria-hidden': 'true'}, icon), ' ', state),
            state === 'missing' ? h('span.warn-text', ' No push or pull request starts a run', may ? ' until you repair it.' : '.') : null),
          r.webhookUrl ? [h('dt', 'delivers to'), h('dd', h('code', r.webhookUrl))] : null,
          r.webhookError ? [h('dt', 'last error'), h('dd.hook-error', r.webhookError)] : null,
          h('dt', 'checked'), h('dd', when(r.checkedAt)),
          r.statusContext ? [h('dt', 'commit status'), h('dd', h('code', r.statusContext))] : null),
        msg) : msg);
  };
  draw();
  return el;
}

/** The trigger form: one input per declared variable (a select when it has options). */
async function triggerDialog(ctx, p) {
  let spec;
  try {
    spec = (await get(`/pipelines/${p.pipelineId}/spec`)).spec;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      toast('This pipeline has no definition yet: write one on the Definition tab.', 'error');
      return;
    }
    toast(e.message, 'error');
    return;
  }
  const vars = Object.entries(spec.variables || {}).map(([name, v]) => (v && typeof v === 'object' ? {name, ...v} : {name, default: v == null ? '' : String(v)}));
  const inputs = {};
  const rows = vars.map((v) => {
    const input = v.options?.length
      ? h('select', {name: v.name}, v.options.map((o) => h('option', {value: o, selected: o === v.default}, o)))
      : h('input', {name: v.name, value: v.default ?? '', required: !!v.required, spellcheck: 'false'});
    inputs[v.name] = input;
    return field(v.name + (v.required ? ' *' : ''), input, v.description);
  });
  const body = h('div', vars.length ? rows : h('p.muted', 'This pipeline declares no variables.'));
  const choice = await dialog(`Run ${p.name}`, body, [['Cancel', null], ['▶ Run', 'run', 'primary']]);
  if (choice !== 'run') return;
  const variables = {};
  for (const [k, el] of Object.entries(inputs)) variables[k] = el.value;
  try {
    const run = await post(`/pipelines/${p.pipelineId}/trigger`, {variables, requestId: 'ui-' + crypto.randomUUID()});
    ctx.navigate(`/runs/${run.runId}`);
  } catch (e) {
    toast(e.message, 'error');
  }
}

async function settings(ctx) {
  const id = ctx.params.pipelineId;
  const p = await get(`/pipelines/${id}`);
  if (!ctx.current) return;
  ctx.setTitle(`${p.name} settings`);
  const hook = h('div');
  const showHook = (res) => mount(hook,
    h('div.alert.warn', h('strong', 'Webhook secret (shown only now): '), h('div.secret-once', res.secret),
      h('div.row', h('button.btn.small', {type: 'button', onclick: () => copy(res.secret, 'Secret copied')}, 'Copy secret'))),
    h('div.table-wrap', h('table', h('tbody', Object.entries(res.urls || {}).map(([forge, url]) =>
      h('tr', h('th', forge), h('td', h('code', url)), h('td', h('button.btn.small', {type: 'button', onclick: () => copy(url, 'URL copied')}, 'Copy')))))))); 
  mount(ctx.main, h('section.page',
    pipelineHead(p, 'settings'),
    pipelineForm(p, async (body) => {
      await put(`/pipelines/${id}`, body);
      toast('Settings saved', 'success');
      ctx.navigate(`/pipelines/${id}/settings`, true);
    }, 'Save settings'),
    h('div.card',
      h('h2', 'Webhook'),
      h('p', 'Forges start runs by sending push, tag and pull-request events to the hook URL, signed with the webhook secret. ',
        p.webhookSecretSet ? 'A secret is set.' : 'No secret is set yet: deliveries are refused until you generate one.'),
      h('div.table-wrap', h('table', h('tbody', ['github', 'gitlab', 'gitea', 'bitbucket'].map((forge) => {
        const url = `${location.origin}/api/v1/webhooks/${forge}/${id}`;
        return h('tr', h('th', forge), h('td', h('code', url)));
      })))),
      h('div.actions', h('button.btn', {type: 'button', onclick: async () => {
        if (p.webhookSecretSet && !await confirm('Rotate the webhook secret?', 'Deliveries signed with the old secret will be refused until the forge has the new one.', 'Rotate')) return;
        try { showHook(await post(`/pipelines/${id}/webhook/rotate`)); } catch (e) { mount(hook, errorBox(e)); }
      }}, p.webhookSecretSet ? 'Rotate secret' : 'Generate secret')),
      hook),
    h('div.card',
      h('h2', 'Delete pipeline'),
      h('p', 'Deletes the pipeline with its definitions, runs and logs. A pipeline with an active run cannot be deleted.'),
      h('div.actions', h('button.btn.danger', {type: 'button', onclick: async () => {
        if (!await confirm(`Delete ${p.name}?`, 'Its definitions, runs and logs are deleted too. This cannot be undone.', 'Delete', 'danger')) return;
        try { await del(`/pipelines/${id}`); toast(`Deleted ${p.name}`); ctx.navigate('/pipelines'); } catch (e) { toast(e.message, 'error'); }
      }}, 'Delete pipeline')))));
}
