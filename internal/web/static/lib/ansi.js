// ANSI escape sequences in log lines: SGR colours and styles become classes
// (f0–f15, b0–b15, a-b bold, …) or, for 256-colour and true-colour codes,
// inline colours set through the CSSOM (allowed by the CSP); every other
// escape sequence is dropped. A carriage return keeps what was written after
// it, as a terminal shows a progress line.

// CSI … final byte, OSC … BEL/ST, and lone ESC + one char.
const ESC_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** The text without escape sequences, after the last carriage return. */
export function plain(s) {
  if (s.indexOf('\x1b') < 0 && s.indexOf('\r') < 0) return s;
  return lastCR(s).replace(ESC_RE, '');
}

function lastCR(s) {
  const t = s.endsWith('\r') ? s.slice(0, -1) : s;
  const i = t.lastIndexOf('\r');
  return i < 0 ? t : t.slice(i + 1);
}

const cube = [0, 95, 135, 175, 215, 255];
function color256(n) {
  if (n < 16) return {cls: n};
  if (n < 232) {
    n -= 16;
    return {rgb: `rgb(${cube[Math.floor(n / 36)]},${cube[Math.floor(n / 6) % 6]},${cube[n % 6]})`};
  }
  const g = 8 + (n - 232) * 10;
  return {rgb: `rgb(${g},${g},${g})`};
}

/**
 * Segments of a line: [{text, cls: 'f1 a-b', fg: 'rgb(…)', bg}], text
 * without escapes. Lines without ESC give one segment.
 */
export function segments(s) {
  s = s.indexOf('\r') < 0 ? s : lastCR(s);
  if (s.indexOf('\x1b') < 0) return [{text: s, cls: ''}];
  const out = [];
  let st = {fg: null, bg: null, b: false, d: false, i: false, u: false, s: false, inv: false};
  let last = 0;
  const push = (text) => {
    if (!text) return;
    let fg = st.fg, bg = st.bg;
    if (st.inv) [fg, bg] = [bg ?? {cls: 7}, fg ?? {cls: 0}];
    const cls = [];
    if (fg?.cls != null) cls.push('f' + fg.cls);
    if (bg?.cls != null) cls.push('b' + bg.cls);
    if (st.b) cls.push('a-b');
    if (st.d) cls.push('a-d');
    if (st.i) cls.push('a-i');
    if (st.u) cls.push('a-u');
    if (st.s) cls.push('a-s');
    out.push({text, cls: cls.join(' '), fg: fg?.rgb, bg: bg?.rgb});
  };
  ESC_RE.lastIndex = 0;
  for (let m; (m = ESC_RE.exec(s));) {
    push(s.slice(last, m.index));
    last = m.index + m[0].length;
    const seq = m[0];
    if (!seq.startsWith('\x1b[') || !seq.endsWith('m')) continue;
    const codes = seq.slice(2, -1).split(/[;:]/).map((c) => (c === '' ? 0 : Number(c)));
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) st = {fg: null, bg: null, b: false, d: false, i: false, u: false, s: false, inv: false};
      else if (c === 1) st.b = true;
      else if (c === 2) st.d = true;
      else if (c === 3) st.i = true;
      else if (c === 4) st.u = true;
      else if (c === 7) st.inv = true;
      else if (c === 9) st.s = true;
      else if (c === 22) st.b = st.d = false;
      else if (c === 23) st.i = false;
      else if (c === 24) st.u = false;
      else if (c === 27) st.inv = false;
      else if (c === 29) st.s = false;
      else if (c >= 30 && c <= 37) st.fg = {cls: c - 30};
      else if (c >= 90 && c <= 97) st.fg = {cls: c - 90 + 8};
      else if (c >= 40 && c <= 47) st.bg = {cls: c - 40};
      else if (c >= 100 && c <= 107) st.bg = {cls: c - 100 + 8};
      else if (c === 39) st.fg = null;
      else if (c === 49) st.bg = null;
      else if (c === 38 || c === 48) {
        let col = null;
        if (codes[k + 1] === 5 && codes[k + 2] != null) { col = color256(codes[k + 2] & 255); k += 2; }
        else if (codes[k + 1] === 2 && codes[k + 4] != null) {
          col = {rgb: `rgb(${codes[k + 2] & 255},${codes[k + 3] & 255},${codes[k + 4] & 255})`};
          k += 4;
        }
        if (c === 38) st.fg = col; else st.bg = col;
      }
    }
  }
  push(s.slice(last));
  return out.length ? out : [{text: '', cls: ''}];
}
