// The run page: stages → jobs → steps with live status, the gates waiting for
// a decision, the controls, and the selected step's log (history over HTTP,
// then live over the WebSocket from the last line received: no gap, no
// repeat).

import {h, mount, badge, statusIcon, when, span, toast, dialog, confirm, errorBox, debounce, matrixOf, isFinal, field} from '../lib/dom.js';
import {get, post, download, ApiError, session} from '../lib/api.js';
import {subscribe} from '../lib/live.js';
import {LogView} from '../lib/logview.js';

const LOG_PAGE = 10000;

export default async function render(ctx) {
  const runId = ctx.params.runId;
  const q = ctx.query;
  const headEl = h('div');
  const gatesEl = h('div');
  const statusesEl = h('div');
  const graphEl = h('div.graph', {role: 'group', 'aria-label': 'Stages and jobs'});
  const stepsEl = h('div.steps');
  const timelineEl = h('div');
  const view = new LogView({
    lineHref: (seq) => linkFor({line: seq}),
    onLink: (seq) => history.replaceState(null, '', linkFor({line: seq})),
    onDownload: () => {
      const st = selectedStep();
      if (st) download(`/pipelines/runs/${runId}/steps/${st.stepRunId}/logs?format=text`, `${runId}-${st.name || st.stepRunId}.log`).catch((e) => toast(e.message, 'error'));
    },
  });
  ctx.onCleanup(() => view.destroy());

  let run = null;
  let pipeline = null;
  let approvals = [];
  let jobSel = q.get('job') || '';
  let stepSel = q.get('step') || '';
  let pendingLine = Number(q.get('line')) || 0;
  let userPicked = !!(jobSel || stepSel);
  let logSub = null;
  let logAbort = null;
  let openedStep = '';
  let mounted = false;

  const linkFor = ({line} = {}) => {
    const p = new URLSearchParams();
    if (jobSel) p.set('job', jobSel);
    if (stepSel) p.set('step', stepSel);
    if (line) p.set('line', line);
    return `/runs/${runId}${p.toString() ? '?' + p : ''}`;
  };
  const jobs = () => run.stages.flatMap((s) => s.jobs);
  const selectedJob = () => jobs().find((j) => j.jobRunId === jobSel);
  const selectedStep = () => selectedJob()?.steps.find((s) => s.stepRunId === stepSel);

  // ---- loading ----

  const load = async () => {
    const [r, a] = await Promise.all([
      get(`/pipelines/runs/${runId}`),
      get(`/pipelines/runs/${runId}/approvals`).catch(() => []),
    ]);
    if (!ctx.current) return;
    run = r;
    approvals = a || [];
    if (!pipeline) pipeline = await get(`/pipelines/${run.pipelineId}`).catch(() => ({name: run.pipelineId, pipelineId: run.pipelineId}));
    ctx.setTitle(`${pipeline.name} #${run.number}`);
    if (!mounted) {
      // Mounted before the log opens, so that it knows its size.
      mount(ctx.main, h('section.page.wide', headEl, gatesEl, statusesEl, graphEl,
        h('div.run-body', h('div', stepsEl), view.el), timelineEl));
      mounted = true;
    }
    pickDefaults();
    draw();
    if (!performance.getEntriesByName('runnel:run-drawn').length) performance.mark('runnel:run-drawn');
    awaitStatuses();
  };

  // A run's commit statuses are sent after its events (from the outbox,
  // retried when the forge fails): once the run is over, look again a few
  // times until the last one is sent.
  let statusPolls = 0;
  let statusTimer = 0;
  const awaitStatuses = () => {
    clearTimeout(statusTimer);
    if (!run || !isFinal(run.status) || !pipeline?.repository || statusPolls >= 10) return;
    const cs = run.commitStatuses || [];
    if (cs.length && cs.every((c) => !c.error && !['pending', 'running'].includes(c.state))) return;
    statusPolls++;
    statusTimer = setTimeout(() => { if (ctx.current) load().catch(() => {}); }, 2000);
  };
  ctx.onCleanup(() => clearTimeout(statusTimer));
  const reload = debounce(() => load().catch((e) => toast(e.message, 'error')), 300);

  // The job and step to show when none was chosen: the first failed one, else
  // the running one, else the last one that ran.
  const pickDefaults = () => {
    const all = jobs();
    let j = all.find((x) => x.jobRunId === jobSel);
    if (!j || (!userPicked && !j.steps.length)) {
      j = userPicked && j ? j
        : all.find((x) => x.status === 'failed') || all.find((x) => x.status === 'running')
          || [...all].reverse().find((x) => x.startedAt) || all[0];
    }
    if (!j) return;
    if (!userPicked && j.jobRunId !== jobSel) stepSel = '';
    jobSel = j.jobRunId;
    let s = j.steps.find((x) => x.stepRunId === stepSel);
    if (!s || (!userPicked && !isFinal(s.status) && s.status !== 'running')) {
      s = j.steps.find((x) => x.status === 'failed') || j.steps.find((x) => x.status === 'running')
        || [...j.steps].reverse().find((x) => x.startedAt) || j.steps[0];
    }
    if (s) stepSel = s.stepRunId;
    if (s && s.stepRunId !== openedStep) openLog(s);
  };

  // ---- live status ----

  const apply = (d) => {
    if (!run) return;
    let known = true;
    if (d.stepRunId) {
      const st = jobs().flatMap((j) => j.steps).find((x) => x.stepRunId === d.stepRunId);
      if (st) Object.assign(st, pick(d, ['status', 'exitCode', 'startedAt', 'endedAt']), d.reason ? {error: d.reason} : {});
      else known = false;
      if (d.stepRunId === openedStep && logEnded && !isFinal(d.status)) {
        view.setStatus('live');
        followLog(d.stepRunId); // a retry: the step runs again
      }
    } else if (d.jobRunId) {
      const j = jobs().find((x) => x.jobRunId === d.jobRunId);
      if (j) {
        if (d.attempt && d.attempt !== j.attempt) known = false; // a retry: new step runs
        Object.assign(j, pick(d, ['status', 'attempt', 'agentId', 'startedAt', 'endedAt']), {reason: d.reason || ''});
      } else known = false;
    } else {
      Object.assign(run, pick(d, ['status', 'startedAt', 'endedAt']), {reason: d.reason || run.reason});
    }
    if (!known) reload();
  };
  const redraw = debounce(() => { if (run) { pickDefaults(); draw(); } }, 50);
  ctx.onCleanup(subscribe('status', {runId}, (m) => {
    if (m.type === 'reconnected') { reload(); return; }
    if (m.type === 'error') { toast(m.data?.message || 'live updates failed', 'error'); return; }
    if (m.type === 'end') { reload(); return; }
    if (!m.data) return;
    apply(m.data);
    redraw();
    if (m.type === 'run.status' || (m.type === 'job.status' && (m.data.status === 'pending' || m.data.previous === 'pending'))) reloadGates();
  }));
  const reloadGates = debounce(async () => {
    try { approvals = await get(`/pipelines/runs/${runId}/approvals`); drawGates(); } catch { /* next event retries */ }
  }, 200);

  // Running durations tick.
  const tick = setInterval(() => {
    for (const el of ctx.main.querySelectorAll('[data-start]')) el.textContent = span(el.dataset.start);
  }, 1000);
  ctx.onCleanup(() => clearInterval(tick));

  // ---- logs ----

  const openLog = async (s) => {
    openedStep = s.stepRunId;
    logSub?.();
    logSub = null;
    logAbort?.abort();
    const abort = logAbort = new AbortController();
    view.clear();
    view.emptyText = (s.status === 'pending' || s.status === 'queued') ? 'Waiting for the step to start…' : 'No output.';
    view.setStatus('loading…');
    drawLogTitle();
    try {
      for (let offset = 0; ;) {
        const lines = await get(`/pipelines/runs/${runId}/steps/${s.stepRunId}/logs`, {offset, limit: LOG_PAGE}, {signal: abort.signal});
        if (abort.signal.aborted) return;
        view.append(lines);
        offset += lines.length;
        if (lines.length < LOG_PAGE) break;
      }
    } catch (e) {
      if (e.name === 'AbortError' || abort.signal.aborted) return;
      view.setStatus('could not load the log: ' + e.message);
    }
    if (abort.signal.aborted) return;
    if (pendingLine && view.goToSeq(pendingLine)) pendingLine = 0;
    view.setStatus(isFinal(s.status) ? 'complete' : 'live');
    followLog(s.stepRunId);
  };

  // followLog streams the step's lines after the last one shown. A stream
  // ends when the step is final; a retry runs the same step again (same id,
  // its lines appended), so apply() follows it again then.
  let logEnded = false;
  const followLog = (stepRunId) => {
    logSub?.();
    logEnded = false;
    logSub = subscribe('logs', {stepRunId, batch: true}, (m) => {
      if (m.type === 'lines' || m.type === 'line') {
        view.append(m.type === 'lines' ? m.data : [m.data]);
        if (pendingLine && view.goToSeq(pendingLine)) pendingLine = 0;
      } else if (m.type === 'end') {
        logEnded = true;
        logSub = null;
        view.setStatus('complete');
        // The step may already be running again (its retry's status came first).
        const st = run && jobs().flatMap((j) => j.steps).find((x) => x.stepRunId === stepRunId);
        if (st && !isFinal(st.status) && stepRunId === openedStep) { view.setStatus('live'); followLog(stepRunId); }
      } else if (m.type === 'error') view.setStatus(m.data?.message || 'stream error');
      else if (m.type === 'reconnected') view.setStatus('live (reconnected)');
    }, {fromSeq: view.lastSeq});
  };
  ctx.onCleanup(() => { logSub?.(); logAbort?.abort(); });

  const drawLogTitle = () => {
    const s = selectedStep();
    if (!s) { view.setTitle('No step selected'); return; }
    view.setTitle(statusIcon(s.status), h('span', s.name || `step ${s.index + 1}`),
      s.startedAt ? h('span.muted', s.endedAt ? span(s.startedAt, s.endedAt) : h('span', {'data-start': s.startedAt}, span(s.startedAt))) : null,
      s.exitCode != null && s.exitCode !== 0 ? h('span.muted', `exit ${s.exitCode}`) : null);
  };

  // ---- drawing ----

  const draw = () => {
    const focusKey = document.activeElement?.dataset?.key;
    drawHead();
    drawGates();
    drawStatuses();
    drawGraph();
    drawSteps();
    drawLogTitle();
    drawTimeline();
    if (focusKey) ctx.main.querySelector(`[data-key="${CSS.escape(focusKey)}"]`)?.focus({preventScroll: true});
  };

  const drawHead = () => {
    const active = !isFinal(run.status);
    const btns = [];
    // Controls are a developer's; viewers follow the run.
    if (!pipeline.projectId || session.may(pipeline.projectId, 'developer')) {
      if (run.status === 'running' || run.status === 'pending') btns.push(h('button.btn', {type: 'button', onclick: () => control('pause')}, '‖ Pause'));
      if (run.status === 'paused') btns.push(h('button.btn', {type: 'button', onclick: () => control('resume')}, '▶ Resume'));
      if (active) btns.push(h('button.btn.danger', {type: 'button', onclick: stop}, '■ Stop'));
      btns.push(h('button.btn' + (active ? '' : '.primary'), {type: 'button', onclick: rerun, title: 'Start a new run with the same variables'}, '↻ Re-run'));
    }
    const vars = Object.entries(run.variables || {});
    mount(headEl,
      h('div.crumbs', h('a', {href: '/pipelines'}, 'Pipelines'), ' / ', h('a', {href: `/pipelines/${run.pipelineId}`}, pipeline.name), ` / run #${run.number}`),
      h('div.page-head.run-head',
        h('div.title',
          h('h1', `Run #${run.number}`, badge(run.status, run.reason)),
          h('div.sub',
            h('span', run.triggerType === 'manual' ? 'started by ' : `${run.triggerType} · `, h('strong', run.triggeredBy || 'unknown'), ' ', when(run.createdAt)),
            run.commit ? h('span', 'commit ', h('code', run.commit.slice(0, 12))) : null,
            run.startedAt ? h('span', 'took ', run.endedAt ? span(run.startedAt, run.endedAt) : h('span', {'data-start': run.startedAt}, span(run.startedAt))) : null,
            run.specVersion ? h('span', `definition v${run.specVersion}`) : null),
          run.reason && run.status !== 'success' ? h('div.muted', run.reason) : null,
          vars.length ? h('div', vars.map(([k, v]) => h('span.chip', `${k}=${v}`))) : null),
        h('div.row', btns)));
  };

  // Gate panels are kept across redraws (keyed by approval), so that a
  // comment being typed survives live updates.
  const gatePanels = new Map();
  const drawGates = () => {
    const pending = approvals.filter((a) => a.status === 'pending');
    for (const id of gatePanels.keys()) if (!pending.some((a) => a.approvalId === id)) gatePanels.delete(id);
    const panels = pending.map((a) => {
      if (gatePanels.has(a.approvalId)) return gatePanels.get(a.approvalId);
      const comment = h('input', {placeholder: 'Comment (optional)', 'aria-label': 'Comment on the decision'});
      const decide = async (verb) => {
        try {
          await post(`/approvals/${a.approvalId}/${verb}`, {comment: comment.value.trim()});
          toast(verb === 'approve' ? 'Approved' : 'Rejected', 'success');
          reloadGates();
          reload();
        } catch (e) { toast(e.message, 'error'); }
      };
      const panel = h('div.approval', {role: 'region', 'aria-label': `Approval for ${a.scope} ${a.target}`},
        h('div.msg', h('strong', `Approval needed for ${a.scope} ${a.target}`), a.message ? h('div', a.message) : null,
          h('div.muted', 'requested ', when(a.requestedAt), a.timeoutAt ? [' · expires ', when(a.timeoutAt)] : '',
            ` · may decide: ${a.approvers?.length ? a.approvers.join(', ') : 'any developer of the project'}`)),
        comment,
        h('button.btn.ok', {type: 'button', onclick: () => decide('approve')}, '✓ Approve'),
        h('button.btn.danger', {type: 'button', onclick: () => decide('reject')}, '✕ Reject'));
      gatePanels.set(a.approvalId, panel);
      return panel;
    });
    // Re-attaching a panel would take the focus from its comment field.
    const same = panels.length === gatesEl.children.length && panels.every((p, i) => gatesEl.children[i] === p);
    if (!same) mount(gatesEl, panels);
  };

  // What the run reported on its commit at the forge, one per context.
  const drawStatuses = () => {
    const cs = run.commitStatuses || [];
    if (!cs.length) { mount(statusesEl); return; }
    mount(statusesEl, h('section.commit-statuses', {'aria-labelledby': 'commit-statuses'},
      h('h3#commit-statuses', 'Commit statuses'),
      h('ul', cs.map((c) => h('li', {'data-context': c.context},
        badge(c.state, c.description || c.state),
        /^https?:\/\//.test(c.targetUrl || '') ? h('a', {href: c.targetUrl, title: c.targetUrl}, c.context) : h('span', c.context),
        c.sha ? h('code.muted', c.sha.slice(0, 10)) : null,
        c.description ? h('span.muted', c.description) : null,
        c.updatedAt ? h('span.muted', when(c.updatedAt)) : null,
        c.error ? h('span.status-error-text', {role: 'note'}, `not sent${c.attempts ? ` (${c.attempts} ${c.attempts === 1 ? 'attempt' : 'attempts'})` : ''}: ${c.error}`) : null)))));
  };

  const drawGraph = () => {
    const nameOf = new Map(jobs().map((j) => [j.key, j.name]));
    mount(graphEl, run.stages.map((st) => h('section.stage', {'aria-label': `Stage ${st.name}`},
      h('h3', statusIcon(stageStatus(st)), st.name),
      st.jobs.map((j) => {
        const mx = matrixOf(j.key);
        return h(`button.job.status-${j.status}`, {
          type: 'button', 'data-key': j.jobRunId, 'aria-pressed': String(j.jobRunId === jobSel),
          onclick: () => { userPicked = true; jobSel = j.jobRunId; stepSel = ''; pendingLine = 0; history.replaceState(null, '', linkFor()); pickDefaults(); draw(); },
        },
        h('div.jname', statusIcon(j.status), h('span.n', j.name), j.startedAt ? h('span.muted', j.endedAt ? span(j.startedAt, j.endedAt) : h('span', {'data-start': j.startedAt}, span(j.startedAt))) : null),
        h('div.jmeta',
          j.needs?.length ? h('span.needs', {title: 'needs ' + j.needs.join(', ')}, '↳ after ' + j.needs.map((k) => nameOf.get(k) || k).join(', ')) : null,
          mx.length ? h('span', mx.map(([k, v]) => h('span.chip', `${k}=${v}`))) : null,
          j.attempt > 1 ? h('span', `attempt ${j.attempt}`) : null,
          j.agentId ? h('span', {title: 'agent'}, `⚙ ${j.agentId}`) : null,
          j.allowedFailure ? h('span', 'may fail') : null),
        j.reason && !['success', 'running'].includes(j.status) ? h('div.reason', j.reason) : null);
      }))));
  };

  const drawSteps = () => {
    const j = selectedJob();
    if (!j) { mount(stepsEl, h('p.muted', 'No jobs.')); return; }
    const mx = matrixOf(j.key);
    mount(stepsEl,
      h('h3', j.name),
      h('div', {role: 'list'}, j.steps.map((s) => h('button.step', {
        type: 'button', role: 'listitem', 'data-key': s.stepRunId, 'aria-current': String(s.stepRunId === stepSel),
        onclick: () => { userPicked = true; stepSel = s.stepRunId; pendingLine = 0; history.replaceState(null, '', linkFor()); drawSteps(); drawLogTitle(); openLog(s); },
      }, statusIcon(s.status), h('span.n', s.name || `step ${s.index + 1}`),
      h('span.d', s.startedAt ? (s.endedAt ? span(s.startedAt, s.endedAt) : h('span', {'data-start': s.startedAt}, span(s.startedAt))) : '')))),
      j.steps.length ? null : h('p.muted', j.status === 'pending' ? 'Not started.' : 'No steps.'),
      h('dl.kv',
        h('dt', 'status'), h('dd', badge(j.status)),
        j.reason ? [h('dt', 'reason'), h('dd', j.reason)] : null,
        h('dt', 'key'), h('dd', h('code', j.key)),
        mx.length ? [h('dt', 'matrix'), h('dd', mx.map(([k, v]) => h('span.chip', `${k}=${v}`)))] : null,
        h('dt', 'attempt'), h('dd', String(j.attempt || 1)),
        j.needs?.length ? [h('dt', 'needs'), h('dd', j.needs.map((k) => h('div', h('code', k))))] : null,
        j.agentId ? [h('dt', 'agent'), h('dd', h('a', {href: '/agents'}, j.agentId))] : null,
        j.queuedAt ? [h('dt', 'queued'), h('dd', when(j.queuedAt))] : null,
        j.startedAt ? [h('dt', 'started'), h('dd', when(j.startedAt))] : null,
        Object.keys(j.outputs || {}).length ? [h('dt', 'outputs'), h('dd', Object.entries(j.outputs).map(([k, v]) => h('div', h('code', `${k}=${v}`))))] : null));
  };

  const drawTimeline = () => {
    const open = timelineEl.querySelector('details')?.open;
    mount(timelineEl, h('details.timeline', {open: !!open},
      h('summary', `Timeline (${(run.timeline || []).length})`),
      h('div.table-wrap', h('table', h('tbody', (run.timeline || []).map((t) => h('tr',
        h('td', h('time', {datetime: t.time, title: new Date(t.time).toLocaleString()}, new Date(t.time).toLocaleTimeString())),
        h('td', t.action), h('td', t.operator || ''), h('td', t.reason || ''))))))));
  };

  // ---- controls ----

  const control = async (verb, body = {}) => {
    try {
      await post(`/pipelines/${run.pipelineId}/runs/${runId}/${verb}`, body);
      toast({stop: 'Stopping the run', pause: 'Paused: running steps finish, nothing new starts', resume: 'Resumed'}[verb], 'success');
      reload();
    } catch (e) { toast(e.message, 'error'); }
  };
  const stop = async () => {
    const reason = h('input', {placeholder: 'Why (optional)', name: 'reason'});
    const v = await dialog(`Stop run #${run.number}?`, [h('p', 'Running steps are stopped; nothing else starts (jobs with always() still run).'), field('Reason', reason)],
      [['Cancel', null], ['■ Stop run', 'stop', 'danger']]);
    if (v === 'stop') control('stop', {reason: reason.value.trim()});
  };
  const rerun = async () => {
    if (!await confirm(`Re-run #${run.number}?`, 'A new run of the current definition starts with the same variables.', '↻ Re-run')) return;
    try {
      const r = await post(`/pipelines/${run.pipelineId}/trigger`, {variables: run.variables || {}, requestId: 'ui-' + crypto.randomUUID()});
      ctx.navigate(`/runs/${r.runId}`);
    } catch (e) { toast(e.message, 'error'); }
  };

  try {
    await load();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      mount(ctx.main, h('section.page', h('h1', 'Run not found'), h('p', `There is no run ${runId}. `, h('a', {href: '/pipelines'}, 'Go to pipelines'), '.')));
      return;
    }
    throw e;
  }
}

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

function stageStatus(st) {
  const s = st.jobs.map((j) => j.status);
  if (s.some((x) => x === 'running')) return 'running';
  if (s.some((x) => x === 'failed')) return 'failed';
  if (s.length && s.every((x) => x === 'success' || x === 'skipped')) return s.every((x) => x === 'skipped') ? 'skipped' : 'success';
  if (s.some((x) => x === 'cancelled')) return 'cancelled';
  return 'pending';
}

