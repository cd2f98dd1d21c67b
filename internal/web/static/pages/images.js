// Image repositories and their builds (Runnel's native image build API,
// /api/v1/image-repositories and /api/v1/image-builds). A repository owns a
// pipeline; each build is a run of it, so builds link to the run page.

import {h, mount, when, span, toast, confirm, errorBox, copy, field, debounce, thead} from '../lib/dom.js';
import {get, post, put, del} from '../lib/api.js';
import {IMAGE_CLIENTS, PATTERNS, WEBHOOK_PROVIDERS} from '../lib/forges.js';

const CLIENTS = Object.keys(IMAGE_CLIENTS);
const DEFAULT_HOSTS = Object.fromEntries(CLIENTS.filter(c => IMAGE_CLIENTS[c].host !== null).map(c => [c, IMAGE_CLIENTS[c].host]));
const PROVIDERS = Object.fromEntries(CLIENTS.filter(c => IMAGE_CLIENTS[c].provider).map(c => [c, IMAGE_CLIENTS[c].provider]));
const NAME_PATTERN = PATTERNS.imageName;
const VERSION_TAGGING = [[0, 'None'], [1, 'Build time (vYYYYMMDD.hhmmss)'], [2, 'Commit id']];
const BUILD_STATUS = {
  W: ['waiting', 'waiting', '◷'],
  B: ['building', 'running', '●'],
  S: ['succeeded', 'success', '✓'],
  F: ['failed', 'failed', '✕'],
  C: ['cancelled', 'cancelled', '⊘'],
};
const PAGE_SIZE = 20;
const POLL_MS = 5000;

export default async function render(ctx) {
  if (ctx.view === 'detail') return detailPage(ctx);
  return listPage(ctx);
}

const repoHref = (ns, name) => `/images/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const repoApi = (ns, name) => `/image-repositories/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;

// ======================= list =======================

async function listPage(ctx) {
  ctx.setTitle('Image repositories');
  let namespace = ctx.query.get('namespace') || '';
  const nsInput = h('input', {type: 'search', name: 'namespace', value: namespace, autocomplete: 'off', spellcheck: 'false', placeholder: 'every namespace'});
  const listBox = h('div', h('p.loading', 'Loading repositories…'));
  let seq = 0;

  async function load() {
    const mine = ++seq;
    let list;
    try {
      list = await get('/image-repositories', {namespace});
    } catch (err) {
      if (ctx.current && mine === seq) mount(listBox, errorBox(err));
      return;
    }
    if (!ctx.current || mine !== seq) return;
    mount(listBox, reposTable(list.items || []));
  }

  const onFilter = debounce(() => {
    namespace = nsInput.value.trim();
    history.replaceState(null, '', '/images' + (namespace ? '?namespace=' + encodeURIComponent(namespace) : ''));
    load();
  }, 300);
  nsInput.addEventListener('input', onFilter);
  ctx.onCleanup(() => onFilter.cancel());

  function reposTable(items) {
    if (!items.length) {
      return h('div.table-wrap', h('p.empty', namespace ? `No repositories in ${namespace}.` : 'No image repositories yet: create one below.'));
    }
    return h('div.table-wrap', h('table', {'aria-label': 'Image repositories'},
      thead('Repository', '~Description', 'Source', '~Tags', '~Created'),
      h('tbody', items.map((r) => {
        const bc = r.buildConfig || {};
        const tcs = bc.tagConfigs || [];
        return h('tr',
          h('td', h('a', {href: repoHref(r.namespace, r.repoName)}, h('span.muted', r.namespace + '/'), h('strong', r.repoName)),
            r.isAutomated ? h('span.chip', {title: 'A tag config builds on every push'}, 'auto') : null),
          h('td.hide-sm', r.description || h('span.muted', '—')),
          h('td', h('span.chip', bc.codeRepoClient), ' ', h('span.mono', bc.codeRepoPath || '')),
          h('td.hide-sm', {title: tcs.map((t) => t.dockerRepoTag).join(', ')},
            `${tcs.length} config${tcs.length === 1 ? '' : 's'}`, ' ',
            tcs.slice(0, 3).map((t) => h('span.chip', t.dockerRepoTag)), tcs.length > 3 ? '…' : null),
          h('td.hide-sm', when(r.createdAt), r.createdBy ? h('div', h('small.muted', 'by ' + r.createdBy)) : null));
      }))));
  }

  const formBox = h('div');
  formBox.hidden = true;
  const newBtn = h('button.btn.primary', {type: 'button', 'aria-expanded': 'false', 'aria-controls': 'new-repo'}, 'New repository');
  newBtn.addEventListener('click', async () => {
    const open = formBox.hidden;
    newBtn.setAttribute('aria-expanded', String(open));
    formBox.hidden = !open;
    if (open && !formBox.firstChild) {
      const creds = await loadCredentials();
      if (!ctx.current) return;
      mount(formBox, h('h2', 'New repository'), createRepoForm(ctx, creds, namespace, () => { formBox.hidden = true; newBtn.setAttribute('aria-expanded', 'false'); newBtn.focus(); }));
    }
    if (open) formBox.querySelector('input')?.focus();
  });
  formBox.id = 'new-repo';

  mount(ctx.main, h('section.page',
    h('div.page-head',
      h('div.title', h('h1', 'Image repositories'),
        h('div.sub', h('span', 'Container images built from your repositories and pushed to the server\'s registry.'))),
      newBtn),
    formBox,
    h('h2', 'Repositories'),
    h('div.filters', field('Namespace', nsInput)),
    listBox));
  await load();
}

function createRepoForm(ctx, creds, namespace, close) {
  const ns = h('input', {type: 'text', name: 'namespace', required: true, maxlength: 64, pattern: NAME_PATTERN, value: namespace, autocomplete: 'off', spellcheck: 'false', placeholder: 'team'});
  const name = h('input', {type: 'text', name: 'repoName', required: true, maxlength: 100, pattern: NAME_PATTERN, autocomplete: 'off', spellcheck: 'false', placeholder: 'web'});
  const desc = h('input', {type: 'text', name: 'description', maxlength: 1000, autocomplete: 'off'});
  const isPublic = h('input', {type: 'checkbox', name: 'isPublic'});
  const client = h('select', {name: 'buildConfig.codeRepoClient'}, CLIENTS.map((c) => h('option', {value: c}, c)));
  const crNs = h('input', {type: 'text', name: 'buildConfig.codeRepoNamespace', autocomplete: 'off', spellcheck: 'false', placeholder: 'team'});
  const crName = h('input', {type: 'text', name: 'buildConfig.codeRepoName', autocomplete: 'off', spellcheck: 'false', placeholder: 'web'});
  const crHost = h('input', {type: 'text', name: 'buildConfig.codeRepoHost', autocomplete: 'off', spellcheck: 'false'});
  const cloneUrl = h('input', {type: 'url', name: 'buildConfig.codeRepoCloneUrl', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://git.example.com/team/web.git'});
  const cred = credentialInput(creds, 'buildConfig.codeRepoCredential');
  const forgeWraps = [h('div', field('Owner (user or group)', crNs, 'On the forge; subgroups with / for GitLab')), h('div', field('Repository name', crName))];
  const hostWrap = h('div', field('Host', crHost));
  const cloneWrap = h('div', field('Clone URL', cloneUrl, 'http(s)://, ssh:// or git:// URL, without a password'));
  const syncClient = () => {
    const simple = client.value === 'Simple';
    for (const w of forgeWraps) w.hidden = simple;
    hostWrap.hidden = simple;
    cloneWrap.hidden = !simple;
    crNs.required = crName.required = !simple;
    cloneUrl.required = simple;
    crHost.required = client.value === 'Gitea';
    crHost.placeholder = DEFAULT_HOSTS[client.value] || 'git.example.com';
    hostWrap.querySelector('.hint')?.remove();
    hostWrap.firstChild.append(h('small.hint', client.value === 'Gitea' ? 'Required for Gitea: host[:port]' : `Default ${DEFAULT_HOSTS[client.value]}; for a self-hosted server`));
  };
  client.addEventListener('change', syncClient);
  syncClient();
  const tc = tagConfigFields({codeRepoType: 'branch', codeRepoTypeValue: 'main', dockerRepoTag: 'latest', dockerfileLocation: '/', buildContextPath: '/', isActive: false, buildCacheEnabled: true, versionTagging: 0},
    'buildConfig.tagConfigs[0]', 'Tag config');

  const msg = h('div');
  const submit = h('button.btn.primary', {type: 'submit'}, 'Create repository');
  const form = h('form.card', {
    onsubmit: async (e) => {
      e.preventDefault();
      mount(msg);
      clearInvalid(form);
      const simple = client.value === 'Simple';
      const bc = {codeRepoClient: client.value, tagConfigs: [tc.read()]};
      if (simple) bc.codeRepoCloneUrl = cloneUrl.value.trim();
      else {
        bc.codeRepoNamespace = crNs.value.trim();
        bc.codeRepoName = crName.value.trim();
        if (crHost.value.trim()) bc.codeRepoHost = crHost.value.trim();
      }
      if (cred.value()) bc.codeRepoCredential = cred.value();
      const body = {namespace: ns.value.trim(), repoName: name.value.trim(), isPublic: isPublic.checked, buildConfig: bc};
      if (desc.value.trim()) body.description = desc.value.trim();
      submit.disabled = true;
      try {
        const repo = await post('/image-repositories', body);
        toast(`Repository ${repo.repoPath} created`, 'success');
        ctx.navigate(repoHref(repo.namespace, repo.repoName));
      } catch (err) {
        mount(msg, errorBox(err));
        markInvalid(form, err);
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('div.grid2',
    field('Namespace', ns, 'Lower-case letters and digits, with . _ __ or - between; also the pipeline\'s project'),
    field('Name', name, 'The image is NAMESPACE/NAME in the registry'),
    field('Description', desc),
    h('div.field', h('label.row', isPublic, 'Public'), h('small.hint', 'Kept for clients; every token sees every repository'))),
  h('h3', 'Source'),
  h('div.grid2',
    field('Code repository client', client),
    forgeWraps, hostWrap, cloneWrap,
    cred.el),
  tc.el,
  msg,
  h('div.actions',
    h('button.btn', {type: 'button', onclick: close}, 'Cancel'),
    submit));
  return form;
}

// ======================= detail =======================

// sourceSection shows where a repository builds from and the webhook URLs to
// register on the forge.
function sourceSection(repo) {
  const bc = repo.buildConfig || {};
  const code = bc.codeRepoWebhookCode || repo.pipelineId;
  const providers = PROVIDERS[bc.codeRepoClient] ? [PROVIDERS[bc.codeRepoClient]] : WEBHOOK_PROVIDERS;
  const pathUrl = /^https?:\/\//.test(bc.codeRepoPathUrl || '') ? bc.codeRepoPathUrl : null;
  return h('section', {'aria-labelledby': 'src-h'},
    h('h2', {id: 'src-h'}, 'Source and webhook'),
    h('div.card', h('dl.kv',
      h('dt', 'Source'),
      h('dd', h('span.chip', bc.codeRepoClient), ' ',
        pathUrl ? h('a', {href: pathUrl, target: '_blank', rel: 'noopener noreferrer'}, bc.codeRepoPath) : h('span.mono', bc.codeRepoPath || bc.codeRepoCloneUrl || '')),
      bc.codeRepoHost ? [h('dt', 'Host'), h('dd', h('code', bc.codeRepoHost))] : null,
      h('dt', 'Credential'),
      h('dd', bc.codeRepoCredential ? h('a', {href: '/credentials'}, h('code', bc.codeRepoCredential)) : h('span.muted', 'none (public source)')),
      h('dt', 'Pipeline'),
      h('dd', h('a', {href: `/pipelines/${encodeURIComponent(repo.pipelineId || code)}`}, repo.pipelineId || code),
        h('small.muted', ' — its runs are the builds')),
      h('dt', providers.length > 1 ? 'Webhook URLs' : 'Webhook URL'),
      h('dd', providers.map((p) => {
        const url = `${location.origin}/api/v1/webhooks/${p}/${code}`;
        return h('div.row', h('code', url),
          h('button.btn.small', {type: 'button', 'aria-label': `Copy the ${p} webhook URL`, onclick: () => copy(url, 'Webhook URL copied')}, 'Copy'));
      }))),
    h('p.hint', 'Register the webhook URL as a push hook in the forge, with a webhook secret: set or rotate the secret on the ',
      h('a', {href: `/pipelines/${encodeURIComponent(repo.pipelineId || code)}/settings`}, 'pipeline\'s settings'),
      '. Pushes to a branch or tag an active tag config follows then build it.')));
}

// buildsTable lists a page of builds, newest first; go(n) shows page n.
function buildsTable(items, total, page, go) {
  if (!items.length) return h('div.table-wrap', h('p.empty', page > 1 ? 'No builds on this page.' : 'No builds yet.'));
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  return [
    h('div.table-wrap', h('table', {'aria-label': 'Builds, newest first'},
      thead('Build', 'Status', 'Tags', '~Commit', '~Started', '~Ended', 'Duration'),
      h('tbody', items.map((b) => h('tr',
        h('td', h('a', {href: `/runs/${encodeURIComponent(b.buildId)}`, title: b.buildId}, `#${b.runNumber ?? ''}`),
          h('div', h('small.muted', b.autoCreated ? 'push' : b.createdBy || ''))),
        h('td', buildBadge(b.status), b.detail && b.status === 'F' ? h('div', h('small.muted', b.detail)) : null),
        h('td', h('code', b.dockerRepoTag), b.dockerRepoVersionTag ? [' ', h('span.chip', b.dockerRepoVersionTag)] : null,
          h('div', h('small.muted', `${b.codeRepoType} ${b.codeRepoTypeValue}`)),
          b.imageId ? h('div', h('small.muted.mono', {title: b.imageId}, b.imageId.slice(0, 19) + '…')) : null),
        h('td.hide-sm', b.codeHeadCommit
          ? (b.codeCommitHttpUrl && /^https?:\/\//.test(b.codeCommitHttpUrl)
            ? h('a.mono', {href: b.codeCommitHttpUrl, target: '_blank', rel: 'noopener noreferrer', title: b.codeHeadCommit}, b.codeHeadCommit.slice(0, 10))
            : h('code', {title: b.codeHeadCommit}, b.codeHeadCommit.slice(0, 10)))
          : h('span.muted', '—')),
        h('td.hide-sm', when(b.startedAt)),
        h('td.hide-sm', when(b.endedAt)),
        h('td.num', b.startedAt ? span(b.startedAt, b.endedAt) : h('span.muted', '—'))))))),
    pages > 1 ? h('nav.pager', {'aria-label': 'Build pages'},
      h('button.btn.small', {type: 'button', disabled: page <= 1, onclick: () => go(page - 1)}, 'Newer'),
      h('span', `Page ${page} of ${pages}`),
      h('button.btn.small', {type: 'button', disabled: page >= pages, onclick: () => go(page + 1)}, 'Older')) : null,
  ];
}

async function detailPage(ctx) {
  const {namespace: ns, repoName: name} = ctx.params;
  ctx.setTitle(`${ns}/${name}`);
  let repo;
  try {
    repo = await get(repoApi(ns, name));
  } catch (err) {
    if (!ctx.current) return;
    mount(ctx.main, h('section.page',
      h('div.crumbs', h('a', {href: '/images'}, 'Image repositories')),
      h('h1', `${ns}/${name}`),
      errorBox(err)));
    return;
  }
  if (!ctx.current) return;

  let buildsPage = 1;
  let pollTimer = null;
  let buildSeq = 0;
  ctx.onCleanup(() => clearTimeout(pollTimer));

  const headBox = h('div');
  const sourceBox = h('div');
  const tagsBox = h('div');
  const buildFormBox = h('div');
  const buildsBox = h('div', h('p.loading', 'Loading builds…'));
  const updated = h('span.muted');

  function drawHead() {
    mount(headBox,
      h('div.crumbs', h('a', {href: '/images'}, 'Image repositories'), ' / ',
        h('a', {href: '/images?namespace=' + encodeURIComponent(repo.namespace)}, repo.namespace)),
      h('div.page-head',
        h('div.title',
          h('h1', repo.repoPath || `${repo.namespace}/${repo.repoName}`),
          h('div.sub',
            repo.description ? h('span', repo.description) : null,
            h('span', repo.isPublic ? 'public' : 'private'),
            repo.isAutomated ? h('span', 'builds on push') : h('span', 'manual builds only'),
            h('span', 'created ', when(repo.createdAt), repo.createdBy ? ` by ${repo.createdBy}` : ''),
            repo.pushedAt ? h('span', 'last push ', when(repo.pushedAt)) : null)),
        h('button.btn.danger', {type: 'button', onclick: deleteRepo}, 'Delete repository')));
  }

  function drawSource() {
    mount(sourceBox, sourceSection(repo));
  }

  // ---- tag configs ----

  function drawTags() {
    const tcs = repo.buildConfig?.tagConfigs || [];
    mount(tagsBox, h('section', {'aria-labelledby': 'tags-h'},
      h('div.row', h('h2', {id: 'tags-h'}, 'Tag configs'), h('div.spacer'),
        h('button.btn.small', {type: 'button', onclick: drawEditor}, 'Edit tag configs')),
      h('div.table-wrap', h('table', {'aria-label': 'Tag configs'},
        thead('Image tag', 'From', '~Dockerfile', '~Context', 'On push', '~Extra tag', '~Cache'),
        h('tbody', tcs.map((t) => h('tr',
          h('td', h('code', t.dockerRepoTag)),
          h('td', h('span.chip', t.codeRepoType), ' ', h('code', t.codeRepoTypeValue)),
          h('td.hide-sm', h('code', t.dockerfileLocation)),
          h('td.hide-sm', h('code', t.buildContextPath)),
          h('td', t.isActive ? 'builds' : h('span.muted', 'off')),
          h('td.hide-sm', (VERSION_TAGGING.find(([v]) => v === t.versionTagging) || [0, String(t.versionTagging)])[1]),
          h('td.hide-sm', t.buildCacheEnabled ? 'on' : h('span.muted', 'off')))))))));
  }

  function drawEditor() {
    const rows = [];
    const list = h('div');
    const msg = h('div');
    const addBtn = h('button.btn', {type: 'button'}, 'Add tag config');
    const redraw = () => {
      mount(list, rows.map((r, i) => {
        r.setPrefix(`tagConfigs[${i}]`, `Tag config ${i + 1}`);
        return r.el;
      }));
      for (const r of rows) r.removeBtn.disabled = rows.length <= 1;
      addBtn.disabled = rows.length >= 100;
    };
    const addRow = (tc) => {
      const r = tagConfigFields(tc, 'tagConfigs[0]', 'Tag config', () => {
        rows.splice(rows.indexOf(r), 1);
        redraw();
        addBtn.focus();
      });
      rows.push(r);
      return r;
    };
    for (const t of repo.buildConfig?.tagConfigs || []) addRow(t);
    if (!rows.length) addRow(null);
    addBtn.addEventListener('click', () => {
      const r = addRow({codeRepoType: 'branch', codeRepoTypeValue: '', dockerRepoTag: '', dockerfileLocation: '/', buildContextPath: '/', isActive: false, buildCacheEnabled: true, versionTagging: 0});
      redraw();
      r.el.querySelector('input')?.focus();
    });
    redraw();
    const submit = h('button.btn.primary', {type: 'submit'}, 'Save tag configs');
    const form = h('form.card', {
      onsubmit: async (e) => {
        e.preventDefault();
        mount(msg);
        clearInvalid(form);
        submit.disabled = true;
        try {
          await put(`${repoApi(repo.namespace, repo.repoName)}/build-config`, {tagConfigs: rows.map((r) => r.read())});
          repo = await get(repoApi(repo.namespace, repo.repoName));
          if (!ctx.current) return;
          toast('Tag configs saved', 'success');
          drawTags();
          drawBuildForm();
          drawHead();
          tagsBox.querySelector('button')?.focus();
        } catch (err) {
          mount(msg, errorBox(err));
          markInvalid(form, err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('p.hint', 'Configs with an id are updated, new ones are added, removed ones are deleted when you save. Builds already made keep what they were built from.'),
    list,
    h('div.row', addBtn),
    msg,
    h('div.actions',
      h('button.btn', {type: 'button', onclick: () => { drawTags(); tagsBox.querySelector('button')?.focus(); }}, 'Cancel'),
      submit));
    mount(tagsBox, h('section', {'aria-labelledby': 'tags-h'}, h('h2', {id: 'tags-h'}, 'Edit tag configs'), form));
    form.querySelector('input')?.focus();
  }

  // ---- builds ----

  function drawBuildForm() {
    const tcs = repo.buildConfig?.tagConfigs || [];
    const tag = h('select', {name: 'tag'}, tcs.map((t) =>
      h('option', {value: t.dockerRepoTag}, `${t.dockerRepoTag} ← ${t.codeRepoType} ${t.codeRepoTypeValue}`)));
    const commit = h('input', {type: 'text', name: 'codeCommitId', pattern: PATTERNS.commit, autocomplete: 'off', spellcheck: 'false', placeholder: 'head of the branch or tag'});
    const commitField = field('Commit (optional)', commit, '');
    const hint = commitField.querySelector('.hint') || commitField.appendChild(h('small.hint'));
    const syncTag = () => {
      const t = tcs.find((x) => x.dockerRepoTag === tag.value);
      const glob = t && /[*?[{]/.test(t.codeRepoTypeValue);
      commit.required = !!glob;
      hint.textContent = glob
        ? `Required: ${t.codeRepoTypeValue} is a pattern, so say which commit (the full 40-character id)`
        : 'A full commit id; empty builds what the branch or tag points at now';
    };
    tag.addEventListener('change', syncTag);
    syncTag();
    const msg = h('div');
    const submit = h('button.btn.primary', {type: 'submit'}, 'Build');
    const form = h('form.card', {
      onsubmit: async (e) => {
        e.preventDefault();
        mount(msg);
        const body = {namespace: repo.namespace, repoName: repo.repoName, tag: tag.value};
        if (commit.value.trim()) body.codeCommitId = commit.value.trim();
        submit.disabled = true;
        try {
          const b = await post('/image-builds', body);
          commit.value = '';
          toast(`Build of ${b.dockerRepoTag} queued`, 'success');
          buildsPage = 1;
          loadBuilds();
        } catch (err) {
          mount(msg, buildError(err));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div.grid2', field('Tag config', tag), commitField),
    msg,
    h('div.actions', submit));
    mount(buildFormBox, tcs.length ? form : h('p.muted', 'No tag config to build.'));
  }

  async function loadBuilds() {
    const mine = ++buildSeq;
    clearTimeout(pollTimer);
    let list;
    try {
      list = await get('/image-builds', {namespace: repo.namespace, repoName: repo.repoName, page: buildsPage, pageSize: PAGE_SIZE});
    } catch (err) {
      if (ctx.current && mine === buildSeq) mount(buildsBox, errorBox(err));
      return;
    }
    if (!ctx.current || mine !== buildSeq) return;
    const items = list.items || [];
    mount(buildsBox, buildsTable(items, list.total || 0, buildsPage, (p) => { buildsPage = p; loadBuilds(); }));
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (items.some((b) => b.status === 'W' || b.status === 'B')) {
      pollTimer = setTimeout(() => { if (ctx.current) loadBuilds(); }, POLL_MS);
    }
  }

  async function deleteRepo() {
    const ok = await confirm(`Delete ${repo.repoPath}?`,
      'The repository, its pipeline and the records of its builds are deleted (the pushed images stay in the registry). A repository with a build in progress cannot be deleted.',
      'Delete repository', 'danger');
    if (!ok) return;
    try {
      await del(repoApi(repo.namespace, repo.repoName));
      toast(`${repo.repoPath} deleted`, 'success');
      ctx.navigate('/images');
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  drawHead();
  drawSource();
  drawTags();
  drawBuildForm();
  mount(ctx.main, h('section.page',
    headBox,
    sourceBox,
    tagsBox,
    h('section', {'aria-labelledby': 'builds-h'},
      h('h2', {id: 'builds-h'}, 'Builds'),
      buildFormBox,
      h('div.row', h('h3', 'History'), updated, h('div.spacer'),
        h('button.btn.small', {type: 'button', onclick: () => loadBuilds()}, 'Refresh')),
      buildsBox)));
  await loadBuilds();
}

// ======================= helpers =======================

function buildBadge(status) {
  const [word, cls, icon] = BUILD_STATUS[status] || [status || 'unknown', 'unknown', '•'];
  return h(`span.badge.status-${cls}`, {title: `${word} (${status})`}, h('span.icon', {'aria-hidden': 'true'}, icon), ' ', word);
}

function buildError(err) {
  const box = errorBox(err);
  if (err.status === 503) {
    box.prepend(h('p', h('strong', 'This server cannot build images: it has no registry to push them to.')));
    box.append(h('p', 'An admin must start the server with ', h('code', '--registry HOST[:PORT]'), ' (or RUNNEL_REGISTRY), and ',
      h('code', '--registry-credential'), ' if the registry needs a login.'));
  } else if (err.status === 502) {
    box.append(h('p', 'The source repository did not answer: check its address and the credential, then try again.'));
  }
  return box;
}

/** Source credentials for a picker; null when they cannot be listed. */
async function loadCredentials() {
  try {
    return (await get('/credentials'))?.items || [];
  } catch {
    return null;
  }
}

/** A select of credentials, or a text input when they could not be listed. {el, value()}. */
function credentialInput(creds, name) {
  if (!creds) {
    const input = h('input', {type: 'text', name, autocomplete: 'off', spellcheck: 'false', placeholder: 'cred_…'});
    return {el: field('Source credential (optional)', input, 'A credential id, for a private repository'), value: () => input.value.trim()};
  }
  const sel = h('select', {name},
    h('option', {value: ''}, 'None (public repository)'),
    creds.map((c) => h('option', {value: c.credentialId}, `${c.name} (${c.kind}${c.host ? ', ' + c.host : ''}${c.projectId ? ', project ' + c.projectId : ''})`)));
  return {
    el: field('Source credential', sel, h('span', 'For a private repository; limited to the namespace\'s project or to none. ', h('a', {href: '/credentials'}, 'Manage credentials'))),
    value: () => sel.value,
  };
}

/**
 * The fields of one tag config, named prefix.field for error highlighting.
 * {el, read(), setPrefix(prefix, legend), removeBtn}.
 */
function tagConfigFields(tc, prefix, legendText, onRemove) {
  tc = tc || {codeRepoType: 'branch', codeRepoTypeValue: '', dockerRepoTag: '', dockerfileLocation: '/', buildContextPath: '/', isActive: false, buildCacheEnabled: true, versionTagging: 0};
  const type = h('select', {}, ['branch', 'tag'].map((t) => h('option', {value: t, selected: t === tc.codeRepoType}, t)));
  const value = h('input', {type: 'text', required: true, value: tc.codeRepoTypeValue || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'main, release/*, v*'});
  const tag = h('input', {type: 'text', required: true, maxlength: 128, pattern: PATTERNS.imageTag, value: tc.dockerRepoTag || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'latest'});
  const dockerfile = h('input', {type: 'text', value: tc.dockerfileLocation || '/', autocomplete: 'off', spellcheck: 'false', placeholder: '/'});
  const context = h('input', {type: 'text', value: tc.buildContextPath || '/', autocomplete: 'off', spellcheck: 'false', placeholder: '/'});
  const active = h('input', {type: 'checkbox', checked: !!tc.isActive});
  const cache = h('input', {type: 'checkbox', checked: tc.buildCacheEnabled !== false});
  const version = h('select', {}, VERSION_TAGGING.map(([v, l]) => h('option', {value: String(v), selected: v === (tc.versionTagging || 0)}, l)));
  const named = {codeRepoType: type, codeRepoTypeValue: value, dockerRepoTag: tag, dockerfileLocation: dockerfile,
    buildContextPath: context, isActive: active, buildCacheEnabled: cache, versionTagging: version};
  const legend = h('legend', legendText);
  const removeBtn = onRemove ? h('button.btn.small.danger', {type: 'button', onclick: onRemove}, 'Remove') : null;
  const el = h('fieldset.card',
    legend,
    h('div.grid2',
      field('Source type', type),
      field('Branch or tag', value, 'A name, or a glob such as release/*'),
      field('Image tag', tag, 'e.g. latest; unique in the repository'),
      field('Extra version tag', version),
      field('Dockerfile location', dockerfile, 'A directory holding Dockerfile, or the file itself'),
      field('Build context', context)),
    h('div.row',
      h('label.row', active, 'Build on every push it follows'),
      h('label.row', cache, 'Use the layer cache'),
      removeBtn ? [h('div.spacer'), removeBtn] : null));
  const setPrefix = (p, l) => {
    for (const [k, input] of Object.entries(named)) input.name = `${p}.${k}`;
    legend.textContent = l;
    if (removeBtn) removeBtn.setAttribute('aria-label', `Remove ${l}`);
  };
  setPrefix(prefix, legendText);
  return {
    el,
    removeBtn: removeBtn || {},
    setPrefix,
    read: () => {
      const out = {
        codeRepoType: type.value,
        codeRepoTypeValue: value.value.trim(),
        dockerRepoTag: tag.value.trim(),
        dockerfileLocation: dockerfile.value.trim() || '/',
        buildContextPath: context.value.trim() || '/',
        isActive: active.checked,
        buildCacheEnabled: cache.checked,
        versionTagging: Number(version.value),
      };
      if (tc.id != null) out.id = tc.id;
      return out;
    },
  };
}

/** Marks the input an API field error names (body.a.b[0].c: …) and focuses it. */
function markInvalid(form, err) {
  const m = /^body\.([A-Za-z0-9_.[\]]+)\s*:/.exec(err?.message || '');
  if (!m) return;
  let path = m[1];
  let input = null;
  while (path && !(input = form.querySelector(`[name="${CSS.escape(path)}"]`))) {
    const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
    path = cut > 0 ? path.slice(0, cut) : '';
  }
  if (!input) return;
  input.setAttribute('aria-invalid', 'true');
  input.focus();
}

function clearInvalid(form) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}
