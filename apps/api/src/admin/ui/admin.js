/* global document, window, location, fetch */
// The admin dashboard: vanilla JS, no build step. Every value from the api is set as text (never as
// HTML). Views: #/queues, #/workers, #/jobs, #/jobs/<id>, #/webhooks.
'use strict';

const PLAN_COLORS = ['#f59e0b', '#10b981', '#ec4899', '#8b5cf6', '#06b6d4', '#84cc16', '#f43f5e', '#eab308'];
const REFRESH_MS = { queues: 2000, workers: 2000, jobs: 4000, job: 2000, webhooks: 4000 };

let timer;
let renderToken = 0;

/** An element: h('td', { class: 'num' }, 'text', child, …). */
function h(tag, attrs, ...children) {
  const el =
    tag === 'svg' || tag === 'rect' || tag === 'text'
      ? document.createElementNS('http://www.w3.org/2000/svg', tag)
      : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof window.Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, options = {}) {
  const response = await fetch(`/admin/api/${path}`, {
    method: options.method ?? 'GET',
    headers: { accept: 'application/json', 'x-lavida-admin': '1' },
    credentials: 'same-origin',
  });
  if (response.status === 401) {
    location.href = `/admin/login?next=${encodeURIComponent('/admin' + location.hash)}`;
    throw new Error('not logged in');
  }
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  return body;
}

const fmtMs = (ms) => (ms === null || ms === undefined ? '–' : ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '–');
const ago = (iso) => {
  if (!iso) return '–';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const badge = (text, kind) => h('span', { class: `badge ${kind ?? text}` }, text);
const short = (id) => (id && id.length > 13 ? `${id.slice(0, 8)}…` : id);

function setStatus(text) {
  document.getElementById('status').textContent = text;
}

// ---- queues -------------------------------------------------------------------------------

function sparkline(completed, failed) {
  const n = completed.length;
  const max = Math.max(1, ...completed.map((c, i) => c + failed[i]));
  const svg = h('svg', { class: 'spark', viewBox: `0 0 ${n} ${max}`, preserveAspectRatio: 'none', role: 'img' });
  completed.forEach((c, i) => {
    const f = failed[i];
    if (c) svg.append(h('rect', { class: 'c', x: i + 0.1, y: max - c - f, width: 0.8, height: c }));
    if (f) svg.append(h('rect', { class: 'f', x: i + 0.1, y: max - f, width: 0.8, height: f }));
  });
  return svg;
}

async function queueAction(path, button) {
  button.disabled = true;
  try {
    const result = await api(path, { method: 'POST' });
    setStatus(`${path}: ${JSON.stringify(result)}`);
  } catch (error) {
    setStatus(`${path} failed: ${error.message}`);
  }
  await render();
}

function queueCard(q) {
  const c = q.counts;
  const t = q.throughput;
  const count = (label, value) => h('div', {}, h('b', {}, value ?? 0), h('span', {}, label));
  const failedList = h('div', { class: 'failed-list' });
  return h(
    'section',
    { class: 'card', 'data-queue': q.name },
    h(
      'h3',
      {},
      q.name,
      h('span', { class: `badge queue-state ${q.paused ? 'paused' : 'running'}` }, q.paused ? 'paused' : 'running'),
      h('span', { class: 'muted' }, `${q.workers} worker${q.workers === 1 ? '' : 's'}`),
    ),
    h(
      'div',
      { class: 'counts' },
      count('waiting', (c.waiting ?? 0) + (c.prioritized ?? 0)),
      count('active', c.active),
      count('delayed', c.delayed),
      count('waiting children', c['waiting-children']),
      count('completed', c.completed),
      count('failed', c.failed),
      count('done / 5 min', t.completed.last5m),
      count('failed / 5 min', t.failed.last5m),
    ),
    sparkline(t.completed.perMinute, t.failed.perMinute),
    h(
      'div',
      { class: 'legend' },
      h('span', {}, '60 min ago'),
      h('span', {}, `${t.completed.last60m} done, ${t.failed.last60m} failed in the last hour`),
      h('span', {}, 'now'),
    ),
    h(
      'div',
      { class: 'actions' },
      q.paused
        ? h('button', { 'data-action': 'resume', onclick: (e) => queueAction(`queues/${q.name}/resume`, e.currentTarget) }, 'Resume')
        : h('button', { 'data-action': 'pause', onclick: (e) => queueAction(`queues/${q.name}/pause`, e.currentTarget) }, 'Pause'),
      h(
        'button',
        { 'data-action': 'retry', disabled: !c.failed, onclick: (e) => queueAction(`queues/${q.name}/retry`, e.currentTarget) },
        'Retry failed',
      ),
      h('button', { 'data-action': 'show-failed', disabled: !c.failed, onclick: () => showFailed(q.name, failedList) }, 'Failed jobs'),
    ),
    failedList,
  );
}

async function showFailed(queue, into) {
  stopRefresh();
  const jobs = await api(`queues/${queue}/jobs?state=failed&limit=50`);
  into.replaceChildren(
    h(
      'table',
      {},
      h('tr', {}, h('th', {}, 'job'), h('th', {}, 'reason'), h('th', {}, '')),
      jobs.map((job) =>
        h(
          'tr',
          { 'data-job': job.id },
          h('td', { class: 'mono' }, job.jobId ? h('a', { href: `#/jobs/${job.jobId}` }, job.id) : job.id),
          h('td', { class: 'error-text' }, job.failedReason ?? ''),
          h(
            'td',
            {},
            h(
              'button',
              {
                onclick: async () => (await api(`queues/${queue}/jobs/${encodeURIComponent(job.id)}/retry`, { method: 'POST' }), render()),
              },
              'Retry',
            ),
            ' ',
            h(
              'button',
              {
                class: 'danger',
                onclick: async () => (await api(`queues/${queue}/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' }), render()),
              },
              'Remove',
            ),
          ),
        ),
      ),
    ),
  );
}

async function queuesView() {
  const queues = await api('queues');
  return [h('h2', {}, 'Queues'), h('div', { class: 'grid' }, queues.map(queueCard))];
}

// ---- workers and peer links ---------------------------------------------------------------

async function workersView() {
  const { workers, links } = await api('workers');
  const rows = workers.map((w) =>
    h(
      'tr',
      { 'data-worker': w.id, 'data-kind': w.kind },
      h('td', {}, w.kind),
      h('td', { class: 'mono' }, w.id),
      h('td', {}, `${w.host} · ${w.pid}`),
      h('td', { class: 'device' }, w.device ?? '–'),
      h('td', { class: 'model' }, w.model ? `${w.model.name}@${w.model.version}` : '–'),
      h('td', {}, badge(w.health), w.healthReason ? h('div', { class: 'muted' }, w.healthReason) : null),
      h(
        'td',
        { class: 'current' },
        w.current.length
          ? w.current.map((c) =>
              h(
                'div',
                {},
                c.jobId ? h('a', { href: `#/jobs/${c.jobId}` }, short(c.jobId)) : c.stageJobId,
                ` ${c.stage} · ${ago(c.startedAt)}`,
              ),
            )
          : h('span', { class: 'muted' }, 'idle'),
      ),
      h('td', { class: 'num' }, `${w.processed} / ${w.failed}`),
      h('td', {}, ago(w.startedAt)),
      h('td', {}, ago(w.lastSeen)),
    ),
  );
  const linkRows = links.map((l) =>
    h(
      'tr',
      { 'data-link': `${l.from}->${l.address}`, 'data-from-kind': l.fromKind },
      h('td', { class: 'mono' }, l.from, h('div', { class: 'muted' }, l.fromKind)),
      h('td', { class: 'mono' }, l.to ?? '?', h('div', { class: 'muted' }, `${l.toKind} · ${l.address}`)),
      h('td', {}, badge(l.health)),
      h('td', { class: 'num exchanges' }, l.exchanges),
      h('td', { class: 'num latency' }, l.exchangeMs === null ? '–' : `${l.exchangeMs.toFixed(2)} ms`),
      h('td', { class: 'num' }, l.lastExchangeMs === null ? '–' : `${l.lastExchangeMs.toFixed(2)} ms`),
      h('td', { class: 'num' }, l.openMs === null ? '–' : `${l.openMs.toFixed(1)} ms`),
      h('td', { class: 'num' }, l.inFlight),
      h('td', { class: 'num' }, l.openFailures),
      h('td', { class: 'error-text' }, l.lastError ?? ''),
    ),
  );
  return [
    h('h2', {}, 'Workers'),
    h(
      'table',
      { id: 'workers' },
      h(
        'tr',
        {},
        ['kind', 'id', 'host · pid', 'device', 'model', 'health', 'current job', 'done / failed', 'started', 'last seen'].map((t) =>
          h('th', {}, t),
        ),
      ),
      rows.length ? rows : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'no worker has sent a heartbeat')),
    ),
    h(
      'h3',
      {},
      'Peer links ',
      h('span', { class: 'muted' }, '(joint-attention exchanges, both ways: the worker driving the session → the peer serving it)'),
    ),
    h(
      'table',
      { id: 'links' },
      h(
        'tr',
        {},
        ['driver', 'peer', 'health', 'exchanges', 'latency (EWMA)', 'last', 'open', 'in flight', 'open failures', 'last error'].map((t) =>
          h(
            'th',
            { class: ['exchanges', 'latency (EWMA)', 'last', 'open', 'in flight', 'open failures'].includes(t) ? 'num' : undefined },
            t,
          ),
        ),
      ),
      linkRows.length ? linkRows : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'no worker reports peers')),
    ),
  ];
}

// ---- jobs ---------------------------------------------------------------------------------

async function jobsView() {
  const jobs = await api('jobs?limit=30');
  return [
    h('h2', {}, 'Recent jobs'),
    h(
      'table',
      { id: 'jobs' },
      h(
        'tr',
        {},
        ['', 'job', 'task', 'status', 'input', 'stages', 'took', 'created'].map((t) => h('th', {}, t)),
      ),
      jobs.map((job) =>
        h(
          'tr',
          { class: 'clickable', 'data-job': job.id, onclick: () => (location.hash = `#/jobs/${job.id}`) },
          h('td', {}, job.image ? h('img', { class: 'thumb', src: job.image, alt: '' }) : null),
          h('td', { class: 'mono' }, h('a', { href: `#/jobs/${job.id}` }, short(job.id))),
          h('td', {}, job.task),
          h('td', {}, badge(job.status)),
          h('td', {}, job.text ?? '', job.error ? h('div', { class: 'error-text' }, job.error) : null),
          h('td', { class: 'muted' }, job.stages),
          h('td', { class: 'num' }, fmtMs(job.duration_ms)),
          h('td', {}, ago(job.created_at)),
        ),
      ),
      jobs.length ? null : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'no jobs yet')),
    ),
  ];
}

/** The plan's boxes (pixels of the model's image) as an SVG over the image, sized to it once it loads. */
function planOverlay(img, plan) {
  const svg = h('svg', { class: 'plan-overlay', preserveAspectRatio: 'none', 'aria-label': 'plan boxes' });
  const draw = () => {
    svg.setAttribute('viewBox', `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
    svg.replaceChildren(
      ...plan
        .filter((item) => Array.isArray(item.box))
        .flatMap((item, i) => {
          const [x1, y1, x2, y2] = item.box;
          const color = PLAN_COLORS[i % PLAN_COLORS.length];
          return [
            h('rect', {
              x: x1,
              y: y1,
              width: Math.max(0, x2 - x1),
              height: Math.max(0, y2 - y1),
              stroke: color,
              'data-label': item.label,
              'data-box': item.box.join(','),
            }),
            h('text', { x: x1 + 0.8, y: y1 + 3.6 }, item.label),
          ];
        }),
    );
  };
  if (img.complete && img.naturalWidth) draw();
  else img.addEventListener('load', draw, { once: true });
  return svg;
}

/** A colour chip (set through the CSSOM: the page's CSP allows no style attributes). */
function swatch(color) {
  const el = h('span', { class: 'swatch' });
  el.style.background = color;
  return el;
}

function figure(image, caption, verdict, plan, round) {
  const img = h('img', { src: image, alt: caption, 'data-round': round ?? '' });
  const frame = h('div', { class: 'frame' }, img, plan && plan.length ? planOverlay(img, plan) : null);
  return h(
    'figure',
    { 'data-round': round ?? 'output' },
    frame,
    h('figcaption', {}, caption, verdict !== undefined ? h('span', { class: 'verdict' }, 'verdict: ', h('b', {}, verdict)) : null),
  );
}

function gantt(stage, t0, total) {
  const t = stage.timing;
  const queued = t.queued_at ? Date.parse(t.queued_at) : null;
  const started = stage.started_at ? Date.parse(stage.started_at) : null;
  const done = stage.completed_at ? Date.parse(stage.completed_at) : null;
  const pct = (ms) => `${Math.max(0, Math.min(100, ((ms - t0) / total) * 100)).toFixed(2)}%`;
  const bar = h('div', { class: 'gantt' });
  if (queued && started) {
    const el = h('div', { class: 'wait' });
    el.style.left = pct(queued);
    el.style.width = `calc(${pct(started)} - ${pct(queued)})`;
    bar.append(el);
  }
  if (started) {
    const el = h('div', { class: 'run' });
    el.style.left = pct(started);
    el.style.width = `calc(${pct(done ?? Date.now())} - ${pct(started)})`;
    bar.append(el);
  }
  return bar;
}

async function jobView(id) {
  const job = await api(`jobs/${encodeURIComponent(id)}`);
  const plan = job.output?.plan ?? job.timeline.find((s) => s.stage === 'plan' || s.stage === 'plan_edit')?.plan ?? [];
  const figures = [];
  if (job.output?.attempts?.length) {
    for (const a of job.output.attempts) {
      // The plan conditions the first image; later rounds are regenerated from the critique.
      figures.push(
        figure(
          a.image,
          `round ${a.round}${a.image === job.output.image ? ' · output' : ''}`,
          a.verdict,
          a.round === 1 ? plan : null,
          a.round,
        ),
      );
    }
  } else if (job.output?.image) {
    // An edit with a plan: its region drawn over the edited image.
    figures.push(figure(job.output.image, 'output', undefined, plan.length ? plan : null, 'output'));
  } else {
    for (const s of job.timeline.filter((s) => s.image))
      figures.push(figure(s.image, `${s.stage} ${s.round ?? ''}`, s.verdict, s.round === 1 ? plan : null, s.round));
  }
  if (typeof job.input.image === 'string') figures.push(figure(job.input.image, 'input image', undefined, null, 'input'));

  const t0 = Math.min(
    ...job.timeline.map((s) => (s.timing.queued_at ? Date.parse(s.timing.queued_at) : Infinity)),
    Date.parse(job.created_at),
  );
  const tEnd = Math.max(...job.timeline.map((s) => (s.completed_at ? Date.parse(s.completed_at) : Date.now())), t0 + 1);
  const verdicts = job.timeline.filter((s) => s.stage === 'reflect');
  const input = { ...job.input };
  delete input.image;

  return [
    h(
      'div',
      { class: 'toolbar' },
      h('a', { href: '#/jobs' }, '← jobs'),
      h('h2', { id: 'job-title' }, `${job.task} `, h('span', { class: 'mono' }, job.id)),
      badge(job.status),
    ),
    h(
      'div',
      { class: 'detail', id: 'job-detail', 'data-job': job.id, 'data-status': job.status },
      h('div', { class: 'figures' }, figures.length ? figures : h('p', { class: 'muted' }, 'no image yet')),
      h(
        'div',
        {},
        h(
          'dl',
          { class: 'kv' },
          h('dt', {}, 'input'),
          h('dd', {}, h('code', {}, JSON.stringify(input))),
          h('dt', {}, 'model'),
          h('dd', {}, job.output?.model ?? '–'),
          h('dt', {}, 'created'),
          h('dd', {}, new Date(job.created_at).toLocaleString()),
          h('dt', {}, 'took'),
          h('dd', {}, fmtMs(job.duration_ms)),
          job.output?.accepted !== undefined ? [h('dt', {}, 'accepted'), h('dd', {}, String(job.output.accepted))] : null,
          job.error ? [h('dt', {}, 'error'), h('dd', { class: 'error-text' }, job.error)] : null,
        ),
        plan.length
          ? [
              h('h3', {}, 'Plan'),
              h(
                'table',
                { id: 'plan' },
                h(
                  'tr',
                  {},
                  ['label', 'box (px)', 'bins'].map((t) => h('th', {}, t)),
                ),
                plan.map((item, i) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, swatch(PLAN_COLORS[i % PLAN_COLORS.length]), item.label),
                    h('td', { class: 'mono' }, item.box ? item.box.map((v) => v.toFixed(1)).join(', ') : '–'),
                    h('td', { class: 'mono' }, item.bins.join(', ')),
                  ),
                ),
              ),
            ]
          : null,
        verdicts.length
          ? [
              h('h3', {}, 'Reflection'),
              h(
                'table',
                { id: 'verdicts' },
                h('tr', {}, h('th', {}, 'round'), h('th', {}, 'verdict')),
                verdicts.map((s) =>
                  h(
                    'tr',
                    { 'data-round': s.round },
                    h('td', {}, s.round),
                    h('td', {}, s.verdict ?? h('span', { class: 'muted' }, s.status)),
                  ),
                ),
              ),
            ]
          : null,
        h('h3', {}, 'Stages'),
        h(
          'table',
          { id: 'timeline' },
          h(
            'tr',
            {},
            ['stage', 'status', 'attempts', 'queued', 'waited', 'ran', 'engine', 'steps', 'peer', 'timeline'].map((t) => h('th', {}, t)),
          ),
          job.timeline.map((s) =>
            h(
              'tr',
              { 'data-stage': s.stage, 'data-round': s.round ?? '' },
              h('td', {}, s.round === undefined ? s.stage : `${s.stage} ${s.round}`),
              h('td', {}, badge(s.status), s.error ? h('div', { class: 'error-text' }, s.error) : null),
              h('td', { class: 'num' }, s.attempts),
              h('td', {}, fmtTime(s.timing.queued_at)),
              h('td', { class: 'num wait-ms' }, fmtMs(s.timing.wait_ms)),
              h('td', { class: 'num run-ms' }, fmtMs(s.timing.run_ms)),
              h('td', { class: 'num' }, fmtMs(s.timing.engine_ms)),
              h('td', { class: 'num' }, s.timing.steps ?? s.timing.forwards ?? '–'),
              h('td', { class: 'mono' }, s.peer ?? ''),
              h('td', {}, gantt(s, t0, tEnd - t0)),
            ),
          ),
        ),
        job.webhook
          ? [
              h('h3', {}, 'Webhook ', h('span', { class: 'muted' }, job.webhook.url)),
              h(
                'table',
                {},
                h(
                  'tr',
                  {},
                  ['event', 'status', 'attempts'].map((t) => h('th', {}, t)),
                ),
                job.webhook.deliveries.map((d) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, d.stage ? `${d.event} · ${d.stage}` : d.event),
                    h('td', {}, badge(d.status)),
                    h('td', {}, d.attempts.map((a) => `${a.status_code ?? a.error ?? '?'} (${a.ms} ms)`).join(', ')),
                  ),
                ),
              ),
            ]
          : null,
        h('details', {}, h('summary', {}, 'raw job'), h('pre', {}, JSON.stringify(job, null, 2))),
      ),
    ),
  ];
}

// ---- webhooks -----------------------------------------------------------------------------

async function webhooksView() {
  const { results } = await api('webhooks?limit=200');
  return [
    h('h2', {}, 'Webhook deliveries ', h('span', { class: 'muted' }, '(every attempt, newest first)')),
    h(
      'table',
      { id: 'webhooks' },
      h(
        'tr',
        {},
        ['time', 'job', 'event', 'url', 'attempt', 'status', 'answer', 'took'].map((t) => h('th', {}, t)),
      ),
      results.map((e) =>
        h(
          'tr',
          { 'data-webhook': e.webhook_id, 'data-status': e.status },
          h('td', {}, fmtTime(e.at)),
          h('td', { class: 'mono' }, h('a', { href: `#/jobs/${e.job_id}` }, short(e.job_id))),
          h('td', {}, e.stage ? `${e.event} · ${e.stage.replace(`${e.job_id}-`, '')}` : e.event),
          h('td', { class: 'mono' }, e.url),
          h('td', { class: 'num' }, e.attempt),
          h('td', {}, badge(e.status)),
          h('td', { class: e.error ? 'error-text' : '' }, e.status_code ?? '', e.error ? ` ${e.error}` : ''),
          h('td', { class: 'num' }, fmtMs(e.ms)),
        ),
      ),
      results.length ? null : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'no delivery yet')),
    ),
  ];
}

// ---- routing ------------------------------------------------------------------------------

function stopRefresh() {
  clearTimeout(timer);
  timer = undefined;
}

async function render() {
  stopRefresh();
  const token = ++renderToken;
  const [, view = 'queues', id] = (location.hash || '#/queues').split('/');
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === view);
  const views = { queues: queuesView, workers: workersView, jobs: id ? () => jobView(id) : jobsView, webhooks: webhooksView };
  const load = views[view] ?? queuesView;
  try {
    const content = await load();
    if (token !== renderToken) return;
    // Keep the images of a job view that is refreshed (no flicker, no reload): replace only when they changed.
    const main = document.getElementById('view');
    const open = main.querySelector('details')?.open;
    main.replaceChildren(...[content].flat(3).filter(Boolean));
    if (open) main.querySelector('details').open = true;
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
    const finished =
      view === 'jobs' && id && ['succeeded', 'failed', 'canceled'].includes(main.querySelector('#job-detail')?.dataset.status);
    if (!finished) timer = setTimeout(render, REFRESH_MS[id ? 'job' : view] ?? 3000);
  } catch (error) {
    if (token !== renderToken) return;
    setStatus(`error: ${error.message}`);
    timer = setTimeout(render, 5000);
  }
}

window.addEventListener('hashchange', render);
render();
