// DOM helpers. Every page builds its elements with h(): text goes in as text
// nodes, never as HTML, so nothing the API returns can inject markup.

/**
 * h('a.btn', {href: '/x', onclick: fn, 'aria-label': 'X'}, 'text', child, [more])
 * The tag may carry an id and classes ("button#save.btn.primary"). Attributes:
 * on* functions become listeners; class/className set the class; dataset keys
 * as "data-x"; true sets a boolean attribute, false/null/undefined skip it.
 */
export function h(tag, attrs, ...children) {
  let id = '';
  tag = tag.replace(/#([\w-]+)/, (_, v) => { id = v; return ''; });
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(' ');
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class' || k === 'className') el.className = [el.className, v].filter(Boolean).join(' ');
    else if (k === 'value') { if ('defaultValue' in el) el.defaultValue = v; el.value = v; } // the default too: form.reset() keeps it
    else if (k === 'checked') el.checked = !!v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces el's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- time and duration ----

const pad = (n) => String(n).padStart(2, '0');

/** "1h 02m", "3m 04s", "12s", "850ms". */
export function duration(ms) {
  if (ms == null || !isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${pad(m % 60)}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** Duration between two ISO times; an open end counts to now. */
export function span(start, end) {
  if (!start) return '';
  const a = Date.parse(start);
  const b = end ? Date.parse(end) : Date.now();
  return duration(b - a);
}

/** "5 minutes ago", "in 3 hours". */
export function ago(iso) {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (!isFinite(t)) return '';
  const diff = (t - Date.now()) / 1000;
  const abs = Math.abs(diff);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  const rtf = new Intl.RelativeTimeFormat(undefined, {numeric: 'auto'});
  for (const [u, sec] of units) if (abs >= sec) return rtf.format(Math.round(diff / sec), u);
  return abs < 10 ? 'just now' : rtf.format(Math.round(diff), 'second');
}

/** Local date and time, with the full ISO time as the title. */
export function when(iso) {
  if (!iso) return h('span.muted', '—');
  const d = new Date(iso);
  return h('time', {datetime: iso, title: d.toLocaleString()}, ago(iso));
}

export function clock(iso) {
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

// ---- statuses ----

const statusIcons = {
  success: '✓', failed: '✕', cancelled: '⊘', skipped: '↷', running: '●', queued: '◷', pending: '◷',
  paused: '‖', waiting: '◷', expired: '◷', approved: '✓', rejected: '✕', failure: '✕', error: '!',
};

/** A status pill: icon and word, coloured by class status-<name>. */
export function badge(status, extra) {
  const s = status || 'unknown';
  return h(`span.badge.status-${s}`, {title: extra || s}, h('span.icon', {'aria-hidden': 'true'}, statusIcons[s] || '•'), ' ', s);
}

/** Only the icon, with the status for screen readers. */
export function statusIcon(status) {
  const s = status || 'unknown';
  return h(`span.sicon.status-${s}`, {role: 'img', 'aria-label': s, title: s}, statusIcons[s] || '•');
}

export const isFinal = (s) => ['success', 'failed', 'cancelled', 'skipped'].includes(s);

// ---- feedback ----

/** A transient message; errors stay until dismissed. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const close = h('button.link', {type: 'button', 'aria-label': 'Dismiss'}, '×');
  const el = h(`div.toast.${kind}`, {role: kind === 'error' ? 'alert' : 'status'}, h('span', message), close);
  close.onclick = () => el.remove();
  box.append(el);
  if (kind !== 'error') setTimeout(() => el.remove(), 5000);
  return el;
}

/** A modal dialog (the native <dialog>: focus trapped, Escape closes). Resolves with the button's value or null. */
export function dialog(title, body, buttons = [['Cancel', null], ['OK', 'ok', 'primary']]) {
  return new Promise((resolve) => {
    const form = h('form', {method: 'dialog'},
      h('h2', title),
      h('div.dialog-body', body),
      h('div.actions', buttons.map(([label, value, cls]) =>
        h(`button.btn${cls ? '.' + cls : ''}`, {value: value ?? '', type: 'submit'}, label))));
    const dlg = h('dialog', {'aria-label': title}, form);
    // Enter in a one-line input means the action (the last button), where the
    // form's implicit default would be the first one, Cancel.
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit'].includes(e.target.type)) {
        e.preventDefault();
        form.requestSubmit([...form.querySelectorAll('.actions button')].pop());
      }
    });
    document.body.append(dlg);
    dlg.addEventListener('close', () => {
      const v = dlg.returnValue;
      dlg.remove();
      resolve(v === '' ? null : v);
    });
    dlg.showModal();
  });
}

/**
 * A dialog whose OK runs action(); errors stay in the dialog. Resolves true
 * when action succeeded, null when cancelled.
 */
export function formDialog(title, body, okLabel, action, cls = 'primary') {
  const msg = h('div', {'aria-live': 'polite'});
  const done = dialog(title, [body, msg], [['Cancel', null], [okLabel, 'ok', cls]]);
  const form = msg.closest('form');
  const dlg = form.closest('dialog');
  const cancel = form.querySelector('button[value=""]');
  if (cancel) cancel.formNoValidate = true;
  let busy = false;
  form.addEventListener('submit', async (e) => {
    const btn = e.submitter;
    if (!btn || btn.value !== 'ok') return;
    e.preventDefault();
    if (busy) return;
    busy = true;
    btn.disabled = true;
    mount(msg);
    try {
      await action();
      dlg.close('ok');
    } catch (err) {
      mount(msg, errorBox(err));
    } finally {
      busy = false;
      btn.disabled = false;
    }
  });
  return done.then((v) => (v === 'ok' ? true : null));
}

export const confirm = (title, message, action = 'OK', cls = 'primary') =>
  dialog(title, h('p', message), [['Cancel', null], [action, 'ok', cls]]).then((v) => v === 'ok');

/** An error as an inline alert. */
export function errorBox(err) {
  const lines = [h('strong', err.message || String(err))];
  if (err.errors?.length) {
    lines.push(h('ul', err.errors.map((e) => h('li', [e.path, e.line ? `line ${e.line}` : '', e.message].filter(Boolean).join(': ')))));
  }
  return h('div.alert.error', {role: 'alert'}, lines);
}

/** Copies text, with a toast saying so. */
export async function copy(text, what = 'Copied') {
  try {
    await navigator.clipboard.writeText(text);
    toast(what);
  } catch {
    toast('Copy failed: select the text and copy it by hand', 'error');
  }
}

/**
 * A table's head: one column header per label ("~Label": hidden on small
 * screens; null: no column, for a column shown only to some).
 */
export function thead(...labels) {
  return h('thead', h('tr', labels.filter((l) => l != null).map((l) => l.startsWith('~')
    ? h('th.hide-sm', {scope: 'col'}, l.slice(1))
    : h('th', {scope: 'col'}, l))));
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || (input.id = 'f' + Math.random().toString(36).slice(2, 9));
  return h('div.field', h('label', {for: id}, label), input, hint ? h('small.hint', hint) : null);
}

/** Debounces fn by ms. */
export function debounce(fn, ms) {
  let t;
  const d = (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

/** Parses the matrix values of a job key "stage/job[k=v,k2=v2]". */
export function matrixOf(key) {
  const m = /\[(.*)\]$/.exec(key || '');
  if (!m) return [];
  return m[1].split(',').map((kv) => kv.split('='));
}
