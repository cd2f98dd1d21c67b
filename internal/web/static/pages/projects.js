// Projects: the ones you may see, with your role; a project's members and
// their roles (owners change them). Roles are what the API enforces: see
// docs/security.md#projects-and-roles.

import {h, mount, when, toast, confirm, errorBox, field, thead} from '../lib/dom.js';
import {get, post, put, del, session} from '../lib/api.js';

const ROLES = [
  ['viewer', 'sees pipelines, runs, logs and artifacts'],
  ['developer', 'also runs, stops, pauses and approves'],
  ['maintainer', 'also edits pipelines, secrets, credentials, image repositories'],
  ['owner', 'also manages members and deletes the project'],
];

export default async function render(ctx) {
  if (ctx.view === 'detail') return detail(ctx);
  return list(ctx);
}

async function list(ctx) {
  ctx.setTitle('Projects');
  const box = h('div', h('p.loading', 'Loading projects…'));
  const load = async () => {
    try {
      const l = await get('/projects');
      if (!ctx.current) return;
      mount(box, !l.items.length ? h('p.empty', 'No project yet: create one, or ask an owner to add you to theirs.')
        : h('div.table-wrap', h('table', {'aria-label': 'Projects'},
          thead('Project', 'Your role', '~Created'),
          h('tbody', l.items.map((p) => h('tr', {'data-project': p.projectId},
            h('td', h('a', {href: `/projects/${encodeURIComponent(p.projectId)}`}, h('strong', p.name)),
              p.name !== p.projectId ? h('div', h('small.muted.mono', p.projectId)) : null,
              p.description ? h('div.muted', p.description) : null),
            h('td', h('span.chip', p.role)),
            h('td.hide-sm', when(p.createdAt))))))));
    } catch (e) { mount(box, errorBox(e)); }
  };
  const id = h('input', {type: 'text', name: 'projectId', required: true, maxlength: 100, autocomplete: 'off', placeholder: 'shop', spellcheck: 'false'});
  const name = h('input', {type: 'text', name: 'name', maxlength: 200, autocomplete: 'off', placeholder: 'Shop'});
  const msg = h('div', {'aria-live': 'polite'});
  const form = h('form.card', {onsubmit: async (e) => {
    e.preventDefault();
    mount(msg);
    try {
      const p = await post('/projects', {projectId: id.value.trim(), name: name.value.trim()});
      toast(`Project ${p.projectId} created; you are its owner`, 'success');
      await session.load(); // your roles changed
      ctx.navigate(`/projects/${encodeURIComponent(p.projectId)}`);
    } catch (err) { mount(msg, errorBox(err)); }
  }},
  h('div.grid2', field('Id', id, 'Letters, digits, ".", "_" or "-"; pipelines name it as projectId'), field('Name', name)),
  msg,
  h('div.actions', h('button.btn.primary', {type: 'submit'}, 'Create project')));
  mount(ctx.main, h('section.page',
    h('div.page-head', h('div.title', h('h1', 'Projects'),
      h('div.sub', h('span', 'A project holds pipelines, secrets and image repositories; your role in it says what you may do there.')))),
    box,
    h('h2', 'New project'),
    form));
  await load();
}

async function detail(ctx) {
  const pid = ctx.params.projectId;
  const p = await get(`/projects/${encodeURIComponent(pid)}`);
  if (!ctx.current) return;
  ctx.setTitle(p.name);
  const owner = session.may(pid, 'owner');
  const box = h('div', h('p.loading', 'Loading members…'));
  const load = async () => {
    try {
      const l = await get(`/projects/${encodeURIComponent(pid)}/members`);
      if (!ctx.current) return;
      mount(box, h('div.table-wrap', h('table', {'aria-label': 'Members'},
        thead('Member', 'Role', '~Since', owner ? 'Actions' : null),
        h('tbody', l.items.map((m) => {
          const role = h('select', {'aria-label': `Role of ${m.name}`, disabled: !owner, onchange: async () => {
            try {
              await put(`/projects/${encodeURIComponent(pid)}/members/${m.memberId}`, {role: role.value});
              toast(`${m.name} is now ${role.value}`, 'success');
            } catch (e) { toast(e.message, 'error'); }
            load();
          }}, ROLES.map(([r]) => h('option', {value: r, selected: r === m.role}, r)));
          return h('tr', {'data-member': m.name},
            h('td', h('strong', m.kind === 'team' ? `team:${m.name}` : m.name)),
            h('td', role),
            h('td.hide-sm', when(m.createdAt)),
            owner ? h('td', h('button.btn.small.danger', {type: 'button', onclick: async () => {
              if (!(await confirm(`Remove ${m.name}?`, `They lose their ${m.role} role in ${p.name}.`, 'Remove', 'danger'))) return;
              try { await del(`/projects/${encodeURIComponent(pid)}/members/${m.memberId}`); } catch (e) { toast(e.message, 'error'); }
              load();
            }}, 'Remove')) : null);
        })))));
    } catch (e) { mount(box, errorBox(e)); }
  };
  let add = null;
  if (owner) {
    const who = h('input', {type: 'text', name: 'member', required: true, maxlength: 100, autocomplete: 'off', placeholder: 'alice or team:release', spellcheck: 'false'});
    const role = h('select', {name: 'role'}, ROLES.map(([r, what]) => h('option', {value: r, selected: r === 'developer', title: what}, `${r} — ${what}`)));
    const msg = h('div', {'aria-live': 'polite'});
    add = h('form.card', {onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      try {
        const m = await put(`/projects/${encodeURIComponent(pid)}/members/${encodeURIComponent(who.value.trim())}`, {role: role.value});
        toast(`${m.name} is ${m.role}`, 'success');
        who.value = '';
        load();
      } catch (err) { mount(msg, errorBox(err)); }
    }},
    h('div.grid2', field('User or team', who, 'A login, or team:NAME'), field('Role', role)),
    msg,
    h('div.actions', h('button.btn.primary', {type: 'submit'}, 'Add member')));
  }
  mount(ctx.main, h('section.page',
    h('div.crumbs', h('a', {href: '/projects'}, 'Projects'), ' / ', pid),
    h('div.page-head', h('div.title', h('h1', p.name),
      h('div.sub', h('span', `Your role: ${session.roleIn(pid) || 'none'}`), p.description ? h('span', p.description) : null)),
      h('div.row', h('a.btn', {href: `/pipelines?projectId=${encodeURIComponent(pid)}`}, 'Pipelines'))),
    h('h2', 'Members'),
    box,
    add ? [h('h2', 'Add a member'), add] : null));
  await load();
}
