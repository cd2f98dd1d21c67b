// A log viewer that stays responsive with hundreds of thousands of lines: the
// lines live in arrays and only the rows in view (plus a margin) are in the
// DOM, rebuilt at most once per animation frame. Each row has a fixed height,
// so the line at any scroll offset is a division away.

import {h, mount, clock} from './dom.js';
import {segments, plain} from './ansi.js';

const ROW = 20; // px, as --row in style.css
const OVERSCAN = 30;

export class LogView {
  /**
   * opts.onLink(seq): a line number was clicked (the page puts it in the URL).
   * opts.onDownload(): the download button was pressed.
   */
  constructor(opts = {}) {
    this.opts = opts;
    this.msgs = [];
    this.times = [];
    this.levels = [];
    this.seqs = [];
    this.plainCache = [];
    this.follow = true;
    this.showTimes = localStorage.getItem('runnel.log.timestamps') === '1';
    this.term = '';
    this.matches = [];
    this.current = -1;
    this.target = -1; // seq of the linked line
    this.dirty = false;
    this.frame = 0;
    this.programmatic = false;

    this.titleEl = h('div.title');
    this.searchEl = h('input', {type: 'search', placeholder: 'Search log', 'aria-label': 'Search in the log', spellcheck: 'false'});
    this.countEl = h('span.count', {'aria-live': 'polite'});
    this.followBtn = h('button.btn.small', {type: 'button', 'aria-pressed': 'true', title: 'Keep the newest line in view'}, 'Follow');
    this.timesBtn = h('button.btn.small', {type: 'button', 'aria-pressed': String(this.showTimes)}, 'Timestamps');
    this.dlBtn = h('button.btn.small', {type: 'button', title: 'Download the whole log as text'}, '⤓ Download');
    this.statusEl = h('span');
    this.linesEl = h('span');
    this.spacer = h('div.log-spacer');
    this.view = h('div.log-view', {tabindex: '0', role: 'log', 'aria-label': 'Log output', 'aria-live': 'off'}, this.spacer);
    this.el = h('div.log',
      h('div.log-bar', this.titleEl,
        h('span.row', this.searchEl,
          h('button.btn.small', {type: 'button', 'aria-label': 'Previous match', onclick: () => this.step(-1)}, '↑'),
          h('button.btn.small', {type: 'button', 'aria-label': 'Next match', onclick: () => this.step(1)}, '↓'),
          this.countEl),
        this.followBtn, this.timesBtn, this.dlBtn),
      this.view,
      h('div.log-status', this.linesEl, this.statusEl));

    this.view.addEventListener('scroll', () => {
      if (!this.programmatic) {
        const atBottom = this.view.scrollTop + this.view.clientHeight >= this.view.scrollHeight - ROW * 2;
        if (this.follow !== atBottom) this.setFollow(atBottom);
      }
      this.programmatic = false;
      this.schedule();
    }, {passive: true});
    this.view.addEventListener('click', (e) => {
      const a = e.target.closest('a.ln');
      if (!a) return;
      e.preventDefault();
      const seq = Number(a.dataset.seq);
      this.target = seq;
      this.setFollow(false);
      this.dirty = true;
      this.schedule();
      this.opts.onLink?.(seq);
    });
    this.followBtn.onclick = () => this.setFollow(!this.follow);
    this.timesBtn.onclick = () => {
      this.showTimes = !this.showTimes;
      localStorage.setItem('runnel.log.timestamps', this.showTimes ? '1' : '0');
      this.timesBtn.setAttribute('aria-pressed', String(this.showTimes));
      this.dirty = true;
      this.schedule();
    };
    this.dlBtn.onclick = () => this.opts.onDownload?.();
    let t;
    this.searchEl.addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => this.search(this.searchEl.value), 200); });
    this.searchEl.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); if (this.searchEl.value !== this.term) this.search(this.searchEl.value); else this.step(e.shiftKey ? -1 : 1); }
      if (e.key === 'Escape') { this.searchEl.value = ''; this.search(''); }
    });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.view);
    this.updateCounts();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
  }

  setTitle(...nodes) { mount(this.titleEl, ...nodes); }
  setStatus(text) { this.statusEl.textContent = text; }

  get length() { return this.msgs.length; }
  get lastSeq() { return this.seqs.length ? this.seqs[this.seqs.length - 1] : 0; }

  clear() {
    this.msgs = []; this.times = []; this.levels = []; this.seqs = []; this.plainCache = [];
    this.matches = []; this.current = -1; this.target = -1;
    this.view.scrollTop = 0;
    this.setFollow(true);
    this.dirty = true;
    this.schedule();
  }

  /** Adds lines ({seq, time, level, message}) after the last one; older seqs are ignored. */
  append(lines) {
    let last = this.lastSeq;
    const from = this.msgs.length;
    for (const l of lines) {
      if (l.seq <= last) continue;
      last = l.seq;
      this.msgs.push(l.message ?? '');
      this.times.push(l.time);
      this.levels.push(l.level);
      this.seqs.push(l.seq);
    }
    if (this.term) {
      const needle = this.term;
      for (let i = from; i < this.msgs.length; i++) if (this.plainAt(i).toLowerCase().includes(needle)) this.matches.push(i);
      this.updateCounts();
    }
    this.dirty = true;
    this.schedule();
  }

  plainAt(i) {
    let p = this.plainCache[i];
    if (p === undefined) p = this.plainCache[i] = plain(this.msgs[i]);
    return p;
  }

  setFollow(on) {
    this.follow = on;
    this.followBtn.setAttribute('aria-pressed', String(on));
    if (on) this.schedule();
  }

  /** Highlights every line containing term (case-insensitive) and goes to the first. */
  search(term) {
    this.term = term.toLowerCase();
    this.matches = [];
    this.current = -1;
    if (this.term) {
      const needle = this.term;
      for (let i = 0; i < this.msgs.length; i++) if (this.plainAt(i).toLowerCase().includes(needle)) this.matches.push(i);
      if (this.matches.length) this.step(1);
    }
    this.updateCounts();
    this.dirty = true;
    this.schedule();
  }

  step(dir) {
    if (!this.matches.length) return;
    this.current = (this.current + dir + this.matches.length) % this.matches.length;
    this.setFollow(false);
    this.reveal(this.matches[this.current]);
    this.updateCounts();
  }

  updateCounts() {
    this.countEl.textContent = this.term ? (this.matches.length ? `${this.current + 1}/${this.matches.length}` : 'none') : '';
    this.linesEl.textContent = `${this.msgs.length.toLocaleString()} line${this.msgs.length === 1 ? '' : 's'}`;
  }

  /** Scrolls so that line index i is in view (centred), and redraws. */
  reveal(i) {
    const top = i * ROW - this.view.clientHeight / 2 + ROW;
    this.programmatic = true;
    this.view.scrollTop = Math.max(0, top);
    this.dirty = true;
    this.schedule();
  }

  /** Goes to the line with that seq and marks it; false when it is not loaded (yet). */
  goToSeq(seq) {
    const i = this.indexOfSeq(seq);
    if (i < 0) return false;
    this.target = seq;
    this.setFollow(false);
    this.reveal(i);
    return true;
  }

  indexOfSeq(seq) {
    let lo = 0, hi = this.seqs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] === seq) return mid;
      if (this.seqs[mid] < seq) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    const n = this.msgs.length;
    const height = n * ROW;
    const digits = String(this.lastSeq || 1).length;
    if (digits !== this.digits) { this.digits = digits; this.view.style.setProperty('--ln', `${Math.max(4, digits) + 2}ch`); }
    if (this.spacer.offsetHeight !== height) this.spacer.style.height = height + 'px';
    this.updateCounts();
    if (this.follow && n) {
      const bottom = Math.max(0, height - this.view.clientHeight);
      if (Math.abs(this.view.scrollTop - bottom) > 1) { this.programmatic = true; this.view.scrollTop = bottom; }
    }
    const first = Math.max(0, Math.floor(this.view.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(n, Math.ceil((this.view.scrollTop + this.view.clientHeight) / ROW) + OVERSCAN);
    if (!this.dirty && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    this.dirty = false;
    const frag = document.createDocumentFragment();
    const cur = this.current >= 0 ? this.matches[this.current] : -1;
    for (let i = first; i < last; i++) frag.append(this.row(i, i === cur));
    if (!n) frag.append(h('div.log-empty', this.emptyText || 'No output yet.'));
    this.spacer.replaceChildren(frag);
  }

  row(i, isCurrent) {
    const seq = this.seqs[i];
    const row = document.createElement('div');
    row.className = 'log-line' + (seq === this.target ? ' target' : '') + (this.levels[i] && this.levels[i] !== 'info' ? ' lvl-' + this.levels[i] : '');
    row.style.top = i * ROW + 'px';
    const ln = document.createElement('a');
    ln.className = 'ln';
    ln.href = this.opts.lineHref ? this.opts.lineHref(seq) : '#';
    ln.dataset.seq = seq;
    ln.textContent = seq;
    row.append(ln);
    if (this.showTimes && this.times[i]) {
      const ts = document.createElement('span');
      ts.className = 'ts';
      ts.textContent = clock(this.times[i]);
      row.append(ts);
    }
    const tx = document.createElement('span');
    tx.className = 'tx';
    const needle = this.term;
    for (const seg of segments(this.msgs[i])) {
      let el = tx;
      if (seg.cls || seg.fg || seg.bg) {
        el = document.createElement('span');
        if (seg.cls) el.className = seg.cls;
        if (seg.fg) el.style.color = seg.fg;
        if (seg.bg) el.style.backgroundColor = seg.bg;
        tx.append(el);
      }
      if (!needle) { el.append(seg.text); continue; }
      const lower = seg.text.toLowerCase();
      let from = 0;
      for (let k = lower.indexOf(needle); k >= 0; k = lower.indexOf(needle, k + needle.length)) {
        el.append(seg.text.slice(from, k));
        const m = document.createElement('mark');
        if (isCurrent) m.className = 'current';
        m.textContent = seg.text.slice(k, k + needle.length);
        el.append(m);
        from = k + needle.length;
      }
      el.append(seg.text.slice(from));
    }
    row.append(tx);
    return row;
  }
}
