// One WebSocket to /api/v1/ws for the whole tab, shared by every page. The
// token goes as a subprotocol (browsers cannot set headers on a WebSocket).
// Subscriptions survive reconnects: a run or step stream resumes after the
// last seq it delivered, so nothing is skipped or repeated.

import {session} from './api.js';

const subs = new Map(); // key -> {channel, params, handler, lastSeq, resumable}
let ws = null;
let state = 'closed';
let retry = 0;
let timer = null;
const stateListeners = new Set();

const keyOf = (channel, p) => `${channel}:${p.runId || p.stepRunId || p.pipelineId || p.projectId}`;

function setState(s) {
  state = s;
  for (const fn of stateListeners) fn(s);
}

/** Calls fn with 'open', 'connecting' or 'closed' on each change. */
export function onState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function subscribeMsg(sub) {
  const params = {...sub.params};
  if (sub.resumable) params.fromSeq = sub.lastSeq;
  return {action: 'subscribe', channel: sub.channel, params};
}

function connect() {
  if (ws || !session.me) return;
  clearTimeout(timer);
  setState('connecting');
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`;
  const sock = new WebSocket(url, ['runnel.v1']); // the session's cookie authenticates
  ws = sock;
  sock.onopen = () => {
    retry = 0;
    setState('open');
    for (const sub of subs.values()) {
      send(subscribeMsg(sub));
      sub.handler({type: 'reconnected'});
    }
  };
  sock.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    const sub = subs.get(keyOf(m.channel, m.params || {}));
    if (!sub) return;
    if (Array.isArray(m.data) && sub.resumable) {
      m.data = m.data.filter((l) => l.seq > sub.lastSeq); // a batch of log lines
      if (!m.data.length) return;
      sub.lastSeq = m.data[m.data.length - 1].seq;
    } else if (m.data && typeof m.data.seq === 'number' && sub.resumable) {
      if (m.data.seq <= sub.lastSeq) return; // already delivered before a reconnect
      sub.lastSeq = m.data.seq;
    }
    // An ended stream is forgotten before its handler runs, so the handler
    // may subscribe again with the same params (a retried step).
    if (m.type === 'end' && subs.get(keyOf(m.channel, m.params || {})) === sub) subs.delete(keyOf(m.channel, m.params || {}));
    sub.handler(m);
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    ws = null;
    setState('closed');
    if (subs.size && session.me) {
      const wait = Math.min(30000, 500 * 2 ** retry++) * (0.5 + Math.random() / 2);
      timer = setTimeout(connect, wait);
    }
  };
}

/**
 * Subscribes: subscribe('logs', {stepRunId, batch: true}, handler, {fromSeq}) or
 * subscribe('status', {runId}, handler). handler gets each server message
 * ({type, data, …}) and {type: 'reconnected'} after a reconnect. Returns the
 * unsubscribe function.
 */
export function subscribe(channel, params, handler, {fromSeq = 0} = {}) {
  const resumable = !!(params.runId || params.stepRunId);
  const key = keyOf(channel, params);
  const sub = {channel, params, handler, lastSeq: fromSeq, resumable};
  subs.set(key, sub);
  if (ws && ws.readyState === WebSocket.OPEN) send(subscribeMsg(sub));
  else connect();
  return () => {
    if (subs.get(key) !== sub) return;
    subs.delete(key);
    send({action: 'unsubscribe', channel, params});
  };
}

/** Closes the connection and forgets every subscription (sign out). */
export function closeAll() {
  subs.clear();
  clearTimeout(timer);
  if (ws) { const s = ws; ws = null; s.close(); }
  setState('closed');
}
