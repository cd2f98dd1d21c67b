// Agents: the machines that run jobs, and (admins only) the registration
// tokens new agents join with.

import {h, mount, badge, when, toast, dialog, confirm, errorBox, copy, field, formDialog, thead} from '../lib/dom.js';
import {get, post, put, del, session} from '../lib/api.js';

const STATUSES = ['online', 'offline', 'disabled'];
const REFRESH_MS = 10000;

export default async function render(ctx) {
  ctx.setTitle('Agents');
  const admin = session.isAdmin;
  let status = STATUSES.includes(ctx.query.get('status')) ? ctx.query.get('status') : '';

  const statusSel = h('select', {name: 'status'},
    ['', ...STATUSES].map((s) => h('option', {value: s, selected: s === status}, s || 'all')));
  const updated = h('span.muted', {'aria-live': 'off'});
  const agentsBox = h('div', h('p.loading', 'Loading agents…'));
  const tokensBox = h('div');

  const openJobs = new Set();
  let seq = 0;
  async function loadAgents() {
    const mine = ++seq;
    let list;
    try {
      list = await get('/agents', {status});
    } catch (err) {
      if (!ctx.current || mine !== seq) return;
      keepFocus(agentsBox, () => mount(agentsBox, errorBox(err)));
      return;
    }
    if (!ctx.current || mine !== seq) return;
    const items = list.items || [];
    keepFocus(agentsBox, () => mount(agentsBox, agentsTable(items)));
    updated.textContent = `${items.length} agent${items.length === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`;
  }

  statusSel.addEventListener('change', () => {
    status = statusSel.value;
    history.replaceState(null, '', '/agents' + (status ? '?status=' + encodeURIComponent(status) : ''));
    mount(agentsBox, h('p.loading', 'Loading agents…'));
    loadAgents();
  });

  function agentsTable(items) {
    if (!items.length) {
      return h('div.table-wrap', h('p.empty', status
        ? `No ${status} agents.`
        : 'No agents yet. Create a registration token and start `runnel agent` with it.'));
    }
    return h('div.table-wrap', h('table', {'aria-label': 'Agents'},
      h('thead', h('tr',
        h('th', {scope: 'col'}, 'Agent'),
        h('th', {scope: 'col'}, 'Status'),
        h('th', {scope: 'col'}, 'Labels'),
        h('th', {scope: 'col'}, 'Jobs'),
        h('th.hide-sm', {scope: 'col'}, 'Version'),
        h('th.hide-sm', {scope: 'col'}, 'Last seen'),
        admin ? h('th', {scope: 'col'}, 'Actions') : null)),
      h('tbody', items.map(agentRow))));
  }

  function agentRow(a) {
    const labels = Object.entries(a.labels || {}).sort(([x], [y]) => x.localeCompare(y));
    const running = a.runningJobRunIds || [];
    return h('tr',
      h('td',
        h('div', h('strong', a.name), a.kind === 'embedded' ? h('span.chip', {title: 'The agent inside the server process'}, 'embedded') : null),
        h('div', h('small.muted.mono', a.agentId)),
        a.hostname || a.platform ? h('div', h('small.muted', [a.hostname, a.platform].filter(Boolean).join(' · '))) : null),
      h('td', badge(a.status)),
      h('td',
        labels.length ? labels.map(([k, v]) => h('span.chip', `${k}=${v}`)) : h('span.muted', 'none'),
        a.labelsOverridden ? h('div', h('small.muted', {title: 'Reported: ' + kvText(a.reportedLabels).replace(/\n/g, ', ')}, 'set by an admin')) : null),
      h('td.num',
        h('span', {title: `${a.runningJobs} running of ${a.capacity} at once`}, `${a.runningJobs ?? running.length} / ${a.capacity}`),
        running.length ? h('details', {
          open: openJobs.has(a.agentId),
          ontoggle: (e) => { if (e.target.open) openJobs.add(a.agentId); else openJobs.delete(a.agentId); },
        },
          h('summary', {'data-focus-key': `jobs-${a.agentId}`}, h('small', running.length === 1 ? '1 job run' : `${running.length} job runs`)),
          h('ul', running.map((id) => h('li', h('code', id))))) : null),
      h('td.hide-sm', a.version || h('span.muted', '—')),
      h('td.hide-sm', when(a.lastSeenAt)),
      admin ? h('td', h('div.row',
        h('button.btn.small', {type: 'button', 'data-focus-key': `toggle-${a.agentId}`, onclick: () => toggleAgent(a)},
          a.disabled ? 'Enable' : 'Disable'),
        h('button.btn.small', {type: 'button', 'data-focus-key': `labels-${a.agentId}`, onclick: () => editLabels(a)}, 'Labels'),
        h('button.btn.small.danger', {type: 'button', 'data-focus-key': `delete-${a.agentId}`, onclick: () => deleteAgent(a)}, 'Delete'))) : null);
  }

  async function toggleAgent(a) {
    const disabled = !a.disabled;
    if (disabled && !(await confirm(`Disable ${a.name}?`,
      'It gets no new jobs; the jobs it runs now finish. You can enable it again later.', 'Disable', 'danger'))) return;
    try {
      await put(`/agents/${encodeURIComponent(a.agentId)}`, {disabled});
      toast(`${a.name} ${disabled ? 'disabled' : 'enabled'}`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadAgents();
  }

  async function editLabels(a) {
    const current = a.labelsOverridden ? a.labels : a.reportedLabels;
    const area = h('textarea', {rows: 8, spellcheck: 'false', autocomplete: 'off', placeholder: 'pool=a\ngpu=true'});
    area.value = kvText(current);
    const reset = h('input', {type: 'checkbox'});
    reset.addEventListener('change', () => { area.disabled = reset.checked; });
    const body = [
      h('p.muted', 'Jobs are routed by these labels (runsOn). One k=v per line; an empty list means no labels at all.'),
      field('Labels', area, `The agent reports: ${kvText(a.reportedLabels).replace(/\n/g, ', ') || 'none'}`),
      a.labelsOverridden ? h('div.field', h('label.row', reset, 'Go back to the labels the agent reports')) : null,
    ];
    const res = await formDialog(`Labels of ${a.name}`, body, 'Save labels', async () => {
      let labels = null;
      if (!reset.checked) labels = parseLabels(area.value);
      await put(`/agents/${encodeURIComponent(a.agentId)}`, {labels});
    });
    if (res) {
      toast(`Labels of ${a.name} saved`, 'success');
      loadAgents();
    }
  }

  async function deleteAgent(a) {
    const msg = a.runningJobs
      ? `${a.name} holds ${a.runningJobs} running job${a.runningJobs === 1 ? '' : 's'}: they are handed back (retried or failed). Its agent token stops working.`
      : `${a.name} and its agent token are removed. A process still running with a valid registration token registers again as a new agent.`;
    if (!(await confirm(`Delete ${a.name}?`, msg, 'Delete', 'danger'))) return;
    try {
      await del(`/agents/${encodeURIComponent(a.agentId)}`);
      toast(`${a.name} deleted`, 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadAgents();
  }

  // ---- registration tokens (admin) ----

  async function loadTokens() {
    let list;
    try {
      list = await get('/registration-tokens');
    } catch (err) {
      if (ctx.current) mount(tokensBox, errorBox(err));
      return;
    }
    if (!ctx.current) return;
    mount(tokensBox, tokensTable(list.items || []));
  }

  function tokensTable(items) {
    if (!items.length) return h('div.table-wrap', h('p.empty', 'No registration tokens.'));
    return h('div.table-wrap', h('table', {'aria-label': 'Registration tokens'},
      thead('Name', 'Uses', 'Expires', '~Created', '~Last used', 'Actions'),
      h('tbody', items.map((t) => {
        const expired = t.expiresAt && Date.parse(t.expiresAt) <= Date.now();
        const usedUp = t.maxUses > 0 && t.uses >= t.maxUses;
        return h('tr',
          h('td', h('div', t.name ? h('strong', t.name) : h('span.muted', '(no name)')), h('small.muted.mono', t.tokenId),
            expired ? h('div', badge('expired')) : usedUp ? h('div', h('span.chip', 'used up')) : null),
          h('td.num', `${t.uses} / ${t.maxUses > 0 ? t.maxUses : '∞'}`),
          h('td', t.expiresAt ? when(t.expiresAt) : h('span.muted', 'never')),
          h('td.hide-sm', when(t.createdAt), t.createdBy ? h('div', h('small.muted', 'by ' + t.createdBy)) : null),
          h('td.hide-sm', when(t.lastUsedAt)),
          h('td', h('button.btn.small.danger', {type: 'button', onclick: () => revokeToken(t)}, 'Revoke')));
      }))));
  }

  async function revokeToken(t) {
    if (!(await confirm(`Revoke ${t.name || t.tokenId}?`,
      'No new agent can register with it. The agents it registered stay.', 'Revoke', 'danger'))) return;
    try {
      await del(`/registration-tokens/${encodeURIComponent(t.tokenId)}`);
      toast('Registration token revoked', 'success');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadTokens();
  }

  function tokenForm() {
    const name = h('input', {type: 'text', name: 'name', maxlength: 200, autocomplete: 'off', placeholder: 'pool a'});
    const maxUses = h('input', {type: 'number', name: 'maxUses', min: 0, max: 1000000, step: 1, value: '0', inputmode: 'numeric'});
    const expiry = h('select', {name: 'expiry'},
      [['', 'Never'], ['3600', 'In 1 hour'], ['86400', 'In 1 day'], ['604800', 'In 7 days'], ['2592000', 'In 30 days'], ['custom', 'At a time…']]
        .map(([v, l]) => h('option', {value: v, selected: v === '86400'}, l)));
    const at = h('input', {type: 'datetime-local', name: 'expiresAt'});
    const atWrap = h('div', field('Expires at (your local time)', at));
    atWrap.hidden = true;
    expiry.addEventListener('change', () => {
      atWrap.hidden = expiry.value !== 'custom';
      at.required = expiry.value === 'custom';
    });
    const msg = h('div');
    const submit = h('button.btn.primary', {type: 'submit'}, 'Create token');
    const form = h('form.card', {
      onsubmit: async (e) => {
        e.preventDefault();
        mount(msg);
        const body = {};
        if (name.value.trim()) body.name = name.value.trim();
        const n = Number(maxUses.value || 0);
        if (!Number.isInteger(n) || n < 0) { mount(msg, errorBox(new Error('Max uses: a whole number, 0 for unlimited'))); return; }
        if (n) body.maxUses = n;
        if (expiry.value === 'custom') {
          const t = new Date(at.value);
          if (!at.value || !isFinite(t)) { mount(msg, errorBox(new Error('Expires at: pick a date and time'))); return; }
          body.expiresAt = t.toISOString();
        } else if (expiry.value) {
          body.expiresAt = new Date(Date.now() + Number(expiry.value) * 1000).toISOString();
        }
        submit.disabled = true;
        try {
          const created = await post('/registration-tokens', body);
          form.reset();
          atWrap.hidden = true;
          loadTokens();
          await showToken(created);
        } catch (err) {
          mount(msg, errorBox(err));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div.grid2',
      field('Name', name, 'What it is for (optional)'),
      field('Max uses', maxUses, 'How many agents may register with it; 0 is unlimited'),
      field('Expires', expiry),
      atWrap),
    msg,
    h('div.actions', submit));
    return form;
  }

  async function showToken(t) {
    const server = `${location.hostname || '127.0.0.1'}:9090`;
    const cmd = `runnel agent --server ${server} --token ${t.token}`;
    await dialog('Registration token created', [
      h('div.alert.warn', 'This is the only time the token is shown: only its hash is stored. Copy it now.'),
      h('p', h('strong', t.name || t.tokenId),
        ' · ', t.maxUses > 0 ? `up to ${t.maxUses} agent${t.maxUses === 1 ? '' : 's'}` : 'unlimited agents',
        ' · ', t.expiresAt ? ['expires ', when(t.expiresAt)] : 'never expires'),
      h('p', 'The token:'),
      h('div.secret-once', t.token),
      h('div.actions', h('button.btn', {type: 'button', onclick: () => copy(t.token, 'Token copied')}, 'Copy token')),
      h('p', 'Start an agent with it on the build machine:'),
      h('div.secret-once', cmd),
      h('p.hint', '--server is the server\'s gRPC address (runnel server --grpc-addr, 127.0.0.1:9090 by default): change it if the agent reaches the server elsewhere. Add --labels k=v,… and --name as needed; the agent keeps its identity in --workdir.'),
      h('div.actions', h('button.btn', {type: 'button', onclick: () => copy(cmd, 'Command copied')}, 'Copy command')),
    ], [['Done', 'ok', 'primary']]);
  }

  // ---- page ----

  mount(ctx.main, h('section.page',
    h('div.page-head',
      h('div.title', h('h1', 'Agents'),
        h('div.sub', h('span', 'The machines that run jobs.'), updated)),
      h('button.btn', {type: 'button', onclick: () => { loadAgents(); if (admin) loadTokens(); }}, 'Refresh')),
    h('div.filters', field('Status', statusSel)),
    agentsBox,
    admin
      ? h('section', {'aria-labelledby': 'reg-tokens-h'},
        h('h2', {id: 'reg-tokens-h'}, 'Registration tokens'),
        h('p.muted', 'A new agent registers once with a registration token; it then keeps its own identity.'),
        tokensBox,
        h('h3', 'New registration token'),
        tokenForm())
      : h('p.muted', 'Only admins can disable, relabel or delete agents and manage registration tokens.')));

  await Promise.all([loadAgents(), admin ? loadTokens() : null]);
  if (!ctx.current) return;
  const timer = setInterval(() => {
    if (document.hidden || document.querySelector('dialog[open]')) return;
    loadAgents();
  }, REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
}

// ---- helpers ----

function kvText(obj) {
  return Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join('\n');
}

/** Parses "k=v" lines (blank lines and # comments skipped); throws naming the bad line. */
function parseLabels(text) {
  const out = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`Line ${i + 1}: "${line}" is not k=v`);
    const k = line.slice(0, eq).trim();
    if (Object.hasOwn(out, k)) throw new Error(`Line ${i + 1}: the label ${k} is given twice`);
    out[k] = line.slice(eq + 1).trim();
  });
  return out;
}

/** Re-renders inside box, keeping the focus on the element with the same data-focus-key. */
function keepFocus(box, fn) {
  const key = box.contains(document.activeElement) ? document.activeElement.dataset?.focusKey : null;
  fn();
  if (key) box.querySelector(`[data-focus-key="${CSS.escape(key)}"]`)?.focus();
}
