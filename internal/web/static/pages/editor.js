// The definition editor: YAML as written, validated as you type by the
// validate endpoint (errors marked at their lines), saved with the head it
// was loaded from so that a concurrent change is shown, never overwritten.

import {h, mount, toast, errorBox, debounce} from '../lib/dom.js';
import {get, post, ApiError} from '../lib/api.js';
import {pipelineHead} from './pipelines.js';

const STARTER = `namespace: demo.hello
version: v1
variables:
  who: world
jobs:
  - name: hello
    steps:
      - name: greet
        run: echo "hello, \${{ variables.who }}"
`;

export default async function render(ctx) {
  const id = ctx.params.pipelineId;
  const p = await get(`/pipelines/${id}`);
  let doc = null;
  try {
    doc = await get(`/pipelines/${id}/spec`, {render: 'text'});
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  if (!ctx.current) return;
  ctx.setTitle(`${p.name} definition`);
  const format = doc?.format === 'json' ? 'json' : 'yaml';
  let head = doc?.headCommitSha || '';
  let saved = doc?.text ?? (doc ? JSON.stringify(doc.spec, null, 2) : STARTER);

  const ta = h('textarea', {
    spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off',
    'aria-label': `Pipeline definition (${format.toUpperCase()}); press Escape then Tab to leave the editor`,
    'aria-describedby': 'problems',
  });
  ta.value = saved;
  const gutter = h('div.gutter', {'aria-hidden': 'true'});
  const bands = h('div.bands', {'aria-hidden': 'true'});
  const vstate = h('span.vstate', {role: 'status', 'aria-live': 'polite'});
  const problems = h('ul.problems#problems');
  const conflict = h('div');
  const message = h('input', {name: 'commitMessage', placeholder: 'What changed (optional)', 'aria-label': 'Commit message', size: 30});
  const saveBtn = h('button.btn.primary', {type: 'button'}, 'Save');
  const banner = h('div');
  let errors = [];
  let escaped = false;

  const lineCount = () => ta.value.split('\n').length;
  const drawGutter = () => {
    const n = lineCount();
    const bad = new Set(errors.map((e) => e.line));
    if (gutter.childElementCount !== n || gutter.dataset.bad !== [...bad].join(',')) {
      const frag = document.createDocumentFragment();
      for (let i = 1; i <= n; i++) {
        const d = document.createElement('div');
        d.textContent = i;
        if (bad.has(i)) { d.className = 'err'; d.title = errors.filter((e) => e.line === i).map((e) => e.message).join('\n'); }
        frag.append(d);
      }
      gutter.replaceChildren(frag);
      gutter.dataset.bad = [...bad].join(',');
      bands.replaceChildren(...[...bad].filter((l) => l > 0).map((l) => {
        const b = h('div.band');
        b.style.top = `${8 + (l - 1) * 20}px`;
        return b;
      }));
    }
    syncScroll();
  };
  const syncScroll = () => {
    gutter.scrollTop = ta.scrollTop;
    bands.style.transform = `translateY(${-ta.scrollTop}px)`;
  };
  ta.addEventListener('scroll', syncScroll);

  const goTo = (line, col = 1) => {
    const lines = ta.value.split('\n');
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, col - 1);
    ta.focus();
    ta.setSelectionRange(pos, pos);
    ta.scrollTop = Math.max(0, (line - 5) * 20);
    syncScroll();
  };

  const showErrors = (list) => {
    errors = list;
    mount(problems, list.map((e) => h('li',
      e.line ? h('button.link', {type: 'button', onclick: () => goTo(e.line, e.column)}, `line ${e.line}:${e.column}`) : null,
      ' ', e.path ? h('code', e.path) : null, e.path ? ': ' : '', e.message)));
    drawGutter();
  };

  let vseq = 0;
  const validate = async () => {
    const seq = ++vseq;
    mount(vstate, 'checking…');
    vstate.className = 'vstate busy';
    try {
      const res = await post(`/pipelines/${id}/spec/validate`, {text: ta.value, format});
      if (seq !== vseq || !ctx.current) return;
      showErrors(res.errors || []);
      vstate.className = 'vstate ' + (res.valid ? 'ok' : 'bad');
      mount(vstate, res.valid ? '✓ valid' : `✕ ${res.errors.length} problem${res.errors.length === 1 ? '' : 's'}`);
    } catch (e) {
      if (seq !== vseq || !ctx.current) return;
      vstate.className = 'vstate bad';
      mount(vstate, e.message);
    }
  };
  const validateSoon = debounce(validate, 350);
  ta.addEventListener('input', () => { drawGutter(); validateSoon(); conflict.replaceChildren(); });
  ta.addEventListener('keydown', (e) => {
    // Tab indents; Escape then Tab moves focus on (keyboard users are not trapped).
    if (e.key === 'Escape') { escaped = true; return; }
    if (e.key === 'Tab' && !escaped && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey) {
      e.preventDefault();
      const {selectionStart: s, selectionEnd: en} = ta;
      ta.setRangeText('  ', s, en, 'end');
      ta.dispatchEvent(new Event('input'));
    }
    if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); save(); }
    escaped = false;
  });

  const save = async (overHead) => {
    validateSoon.cancel();
    saveBtn.disabled = true;
    conflict.replaceChildren();
    try {
      const body = {text: ta.value, format, commitMessage: message.value.trim(), requestId: 'ui-' + crypto.randomUUID()};
      const expected = overHead ?? head;
      if (expected) body.expectedHeadCommitSha = expected;
      const v = await post(`/pipelines/${id}/spec/save`, body);
      saved = ta.value;
      if (v.saveMode === 'pr') {
        mount(conflict, h('div.alert.info', 'Opened a pull request with the change: ',
          v.pullRequestUrl ? h('a', {href: v.pullRequestUrl, target: '_blank', rel: 'noopener'}, v.pullRequestUrl) : `branch ${v.branch}`));
      } else {
        head = v.headCommitSha || v.commitSha || head;
        if (!doc) banner.replaceChildren();
        toast(v.unchanged || v.replayed ? 'No change to save' : `Saved${v.version ? ' version ' + v.version : ''}`, 'success');
      }
      message.value = '';
      showErrors([]);
      vstate.className = 'vstate ok';
      mount(vstate, '✓ saved');
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        showConflict(e);
      } else if (e instanceof ApiError && e.errors.length) {
        showErrors(e.errors);
        vstate.className = 'vstate bad';
        mount(vstate, `✕ not saved: ${e.errors.length} problem${e.errors.length === 1 ? '' : 's'}`);
      } else {
        mount(conflict, errorBox(e));
      }
    } finally {
      saveBtn.disabled = false;
    }
  };
  saveBtn.addEventListener('click', () => save());

  const showConflict = async (e) => {
    let theirs = null;
    try { theirs = await get(`/pipelines/${id}/spec`, {render: 'text'}); } catch { /* shown below without it */ }
    const current = theirs?.headCommitSha || e.body?.detail?.currentHeadCommitSha || '';
    mount(conflict, h('div.alert.warn', {role: 'alert'},
      h('strong', 'Not saved: the definition changed since you opened it. '),
      h('span', theirs ? `Version ${theirs.version || ''} by ${theirs.editor || 'someone'}${theirs.commitMessage ? ` ("${theirs.commitMessage}")` : ''} is now the head. ` : e.message + ' '),
      'Your text is still here. ',
      h('div.actions',
        theirs ? h('button.btn', {type: 'button', onclick: () => {
          ta.value = theirs.text ?? JSON.stringify(theirs.spec, null, 2);
          head = theirs.headCommitSha;
          saved = ta.value;
          conflict.replaceChildren();
          drawGutter();
          validate();
        }}, 'Discard mine and load theirs') : null,
        current ? h('button.btn.danger', {type: 'button', onclick: () => save(current)}, 'Save mine over theirs') : null)));
  };

  const beforeUnload = (e) => { if (ta.value !== saved) e.preventDefault(); };
  window.addEventListener('beforeunload', beforeUnload);
  ctx.onCleanup(() => window.removeEventListener('beforeunload', beforeUnload));

  mount(banner, doc?.source === 'git' ? h('div.alert.info', `Read from ${doc.file} on ${doc.branch} at ${doc.commitSha.slice(0, 10)}; saving ${p.saveMode === 'pr' ? 'opens a pull request' : 'commits to ' + doc.branch}.`) :
    doc ? null : h('div.alert.info', 'No definition yet: start from this example.'));
  mount(ctx.main, h('section.page',
    pipelineHead(p, 'definition'),
    banner,
    h('div.row', vstate, h('div.spacer'), message, saveBtn),
    conflict,
    problems,
    h('div.editor', gutter, h('div.code', bands, ta)),
    h('p.hint', 'Tab indents; Escape then Tab leaves the editor; Ctrl+S saves. The text is kept as written, comments included.')));
  drawGutter();
  validate();
}
