// The dashboard page's script (served by coordinator/dashboard/server.ts). It opens the /events stream
// (Server-Sent Events): a `snapshot` with the whole state, then `step`, `epoch`, `members`, `event`,
// `heartbeats` and `status` updates as they happen (shapes: coordinator/dashboard/state.ts), and draws
// the curves, the worker table, the ring and the events with plain DOM and SVG. It never polls; text
// from the server is only ever set as textContent.
/* global document, window, EventSource, requestAnimationFrame */

const SVG = 'http://www.w3.org/2000/svg';
/** Step points kept in the page; past this the older half is thinned (as the server does). */
const MAX_POINTS = 20000;
const COLORS = {
  loss: '#1f77b4', epochLoss: '#ff7f0e', acc: '#2ca02c', speed: '#9467bd', grid: '#e4e7ec', axis: '#98a2b3',
};

const state = {
  status: 'starting', message: '', job: {}, generation: null, ring: [], workers: new Map(), steps: [], stepsPerEpoch: 0,
  epochs: [], events: [], best: null,
  /** Server clock minus this page's clock, ms (heartbeat ages are computed on the server's clock). */
  skew: 0,
};

const $ = (id) => document.getElementById(id);

function el(name, attrs = {}, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function html(name, text, cls) {
  const e = document.createElement(name);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

const fmt = (v, digits = 4) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

/** About `count` round tick values covering [lo, hi]. */
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function label(v) {
  const a = Math.abs(v);
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return Number(v.toPrecision(3)).toString();
}

/**
 * Draws a line chart into `svg`: `series` are {name, color, points: [[x, y|null], ...], dots}; a null y
 * breaks the line. `opts`: xLabel, yMin/yMax (fixed bounds), xMin, vlines ([{x, text}]), ring ({x, y}).
 * Sets data-points to the number of points of the first series.
 */
function drawChart(svg, series, opts) {
  const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  const m = { l: 46, r: 12, t: 22, b: 30 };
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1])));
  svg.dataset.points = String(series[0]?.points.length ?? 0);
  if (all.length === 0) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, opts.empty ?? 'waiting for data'));
    return;
  }
  let x0 = opts.xMin ?? Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  if (x1 <= x0) x1 = x0 + 1;
  let y0 = opts.yMin ?? Math.min(...all.map((p) => p[1]));
  let y1 = opts.yMax ?? Math.max(...all.map((p) => p[1]));
  if (y1 <= y0) { y0 -= 0.5; y1 += 0.5; }
  if (opts.yMin === undefined) y0 = Math.max(opts.yFloor ?? -Infinity, y0 - (y1 - y0) * 0.05);
  if (opts.yMax === undefined) y1 += (y1 - y0) * 0.05;
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);

  for (const t of ticks(y0, y1, 5)) {
    svg.append(el('line', { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), stroke: COLORS.grid }));
    svg.append(el('text', { x: m.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, label(t)));
  }
  const xt = ticks(x0, x1, 6).filter((t) => !opts.integerX || Number.isInteger(t));
  for (const t of xt) svg.append(el('text', { x: X(t), y: H - m.b + 16, 'text-anchor': 'middle' }, label(t)));
  for (const v of opts.vlines ?? []) {
    if (v.x < x0 || v.x > x1) continue;
    svg.append(el('line', {
      x1: X(v.x), x2: X(v.x), y1: m.t, y2: H - m.b, stroke: COLORS.axis, 'stroke-dasharray': '3 3',
    }));
    if (v.text) svg.append(el('text', { x: X(v.x) - 3, y: m.t + 10, 'text-anchor': 'end' }, v.text));
  }
  svg.append(el('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, stroke: COLORS.axis }));
  svg.append(el('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, stroke: COLORS.axis }));
  svg.append(el('text', { x: W - m.r, y: H - 2, 'text-anchor': 'end' }, opts.xLabel));

  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        svg.append(el('polyline', {
          points: run.join(' '), fill: 'none', stroke: s.color, 'stroke-width': s.width ?? 1.5,
          'stroke-linejoin': 'round',
        }));
      }
      run = [];
    };
    for (const [x, y] of s.points) {
      if (y === null || !Number.isFinite(y)) { flush(); continue; }
      run.push(`${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
    }
    flush();
    if (s.dots || s.points.length === 1) {
      for (const [x, y] of s.points) {
        if (y !== null && Number.isFinite(y)) svg.append(el('circle', { cx: X(x), cy: Y(y), r: 3, fill: s.color }));
      }
    }
  }
  if (opts.ring) {
    svg.append(el('circle', {
      cx: X(opts.ring.x), cy: Y(opts.ring.y), r: 7, fill: 'none', stroke: COLORS.acc, 'stroke-width': 2,
    }));
  }
  // Legend, top left.
  let lx = m.l + 4;
  for (const s of series) {
    svg.append(el('rect', { x: lx, y: 6, width: 12, height: 3, fill: s.color }));
    const t = el('text', { x: lx + 16, y: 11 }, s.name);
    svg.append(t);
    lx += 26 + s.name.length * 6;
  }
}

function drawLoss() {
  const pts = state.steps.map((p) => [p[0], p[3]]);
  const epochMean = state.epochs.map((e) => [e.epoch * state.stepsPerEpoch, e.train_loss]);
  const vlines = state.stepsPerEpoch > 0
    ? state.epochs.map((e) => ({ x: e.epoch * state.stepsPerEpoch, text: `e${e.epoch}` }))
    : [];
  drawChart($('loss-chart'), [
    { name: 'loss per step', color: COLORS.loss, points: pts },
    { name: 'epoch mean', color: COLORS.epochLoss, points: state.stepsPerEpoch > 0 ? epochMean : [], dots: true },
  ], { xLabel: 'global step', vlines, yFloor: 0, empty: 'waiting for the first step' });
}

function drawAccuracy() {
  const acc = state.epochs.map((e) => [e.epoch, e.val_accuracy]);
  const best = state.best ? { x: state.best.epoch, y: state.best.accuracy } : undefined;
  drawChart($('acc-chart'),
    [{ name: 'val accuracy (ring: best)', color: COLORS.acc, points: acc, dots: true, width: 2 }],
    { xLabel: 'epoch', integerX: true, xMin: 0, yMin: 0, yMax: 1, ring: best, empty: 'waiting for the first epoch' });
}

function drawSpeed() {
  drawChart($('speed-chart'), [{ name: 'images/s', color: COLORS.speed, points: state.steps.map((p) => [p[0], p[4]]) }],
    { xLabel: 'global step', yFloor: 0, empty: 'waiting for the first step' });
}

function ago(ms) {
  if (ms === null || ms === undefined) return '-';
  const s = Math.max(0, (Date.now() + state.skew - ms) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.floor(s / 60)} min ago`;
}

function drawWorkers() {
  const body = $('workers').tBodies[0];
  const rows = [...state.workers.values()].sort((a, b) =>
    (a.state === 'in ring' ? 0 : 1) - (b.state === 'in ring' ? 0 : 1) ||
    state.ring.indexOf(a.memberId) - state.ring.indexOf(b.memberId));
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = html('tr');
    const td = html('td', 'no workers yet', 'empty');
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const w of rows) {
    const tr = html('tr');
    tr.dataset.memberId = w.memberId;
    const rank = w.state === 'in ring' ? String(state.ring.indexOf(w.memberId)) : '-';
    tr.append(html('td', rank, 'num'), html('td', w.host), html('td', String(w.pid), 'num'), html('td', w.backend),
      html('td', fmt(w.images_per_s, 1), 'num'),
      html('td', w.state === 'in ring' ? ago(w.lastHeartbeat) : '-', 'num heartbeat'));
    const st = html('td');
    st.append(html('span', w.state, `badge ${w.state.replace(' ', '-')}`));
    tr.append(st);
    body.append(tr);
  }
}

function drawRing() {
  const svg = $('ring');
  const [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  svg.replaceChildren();
  const members = state.ring.map((id) => state.workers.get(id)).filter(Boolean);
  if (members.length === 0) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no ring yet'));
    return;
  }
  const cx = W / 2;
  const cy = H / 2 + 4;
  const r = Math.min(W, H) / 2 - 42;
  svg.append(el('text', { x: 8, y: 16 }, `generation ${state.generation}, ${members.length} worker(s)`));
  const defs = el('defs');
  const marker = el('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  });
  marker.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: COLORS.axis }));
  defs.append(marker);
  svg.append(defs);
  const at = (i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / members.length;
    return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  };
  // Rank r sends to rank r+1: an arrow along the circle, clockwise, from node to node.
  if (members.length > 1) {
    const gap = 20 / r;
    const span = (2 * Math.PI) / members.length;
    for (let i = 0; i < members.length; i++) {
      const a0 = -Math.PI / 2 + span * i + gap;
      const a1 = -Math.PI / 2 + span * (i + 1) - gap;
      if (a1 <= a0) continue;
      const d = `M ${cx + r * Math.cos(a0)} ${cy + r * Math.sin(a0)} ` +
        `A ${r} ${r} 0 ${a1 - a0 > Math.PI ? 1 : 0} 1 ${cx + r * Math.cos(a1)} ${cy + r * Math.sin(a1)}`;
      svg.append(el('path', {
        d, fill: 'none', stroke: COLORS.axis, 'stroke-width': 1.5, 'marker-end': 'url(#arrow)',
      }));
    }
  }
  members.forEach((m, i) => {
    const [x, y] = at(i);
    svg.append(el('circle', { cx: x, cy: y, r: 15, fill: COLORS.loss }));
    svg.append(el('text', {
      x, y: y + 4, 'text-anchor': 'middle', fill: '#fff', style: 'fill:#fff;font-weight:600',
    }, `r${i}`));
    const below = y >= cy;
    svg.append(el('text', { x, y: below ? y + 30 : y - 21, 'text-anchor': 'middle' },
      `${m.host}/pid ${m.pid} (${m.backend})`));
  });
}

const pad2 = (n) => String(n).padStart(2, '0');
const clock = (ms) => {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
};

function drawEvents() {
  const list = $('events');
  list.replaceChildren();
  if (state.events.length === 0) {
    list.append(html('li', 'none yet', 'empty'));
    return;
  }
  for (const e of state.events.slice(-200).reverse()) {
    const li = html('li');
    li.dataset.kind = e.kind;
    li.append(html('time', clock(e.at)), html('span', e.kind, `badge kind-${e.kind}`), html('span', e.text));
    list.append(li);
  }
}

function drawHeader() {
  const s = $('status');
  s.textContent = state.status;
  s.className = `badge ${state.status.split(' ')[0]}`;
  $('message').textContent = state.message;
  const j = state.job;
  const parts = [];
  if (j.workers !== undefined) parts.push(`${j.workers} workers`);
  if (j.batchSize !== undefined) parts.push(`batch ${j.batchSize}`);
  if (j.lr !== undefined) parts.push(`lr ${j.lr}`);
  if (j.momentum !== undefined) parts.push(`momentum ${j.momentum}`);
  if (j.imageSize !== undefined) parts.push(`${j.imageSize}px`);
  if (j.freeze) parts.push(`freeze ${j.freeze}`);
  if (j.bn) parts.push(`bn ${j.bn}`);
  if (j.out) parts.push(`out ${j.out}`);
  $('summary').textContent = parts.join(' · ');
  const last = state.steps.at(-1);
  const lastEpoch = state.epochs.at(-1);
  $('stat-epoch').textContent = last
    ? `${last[1]}${j.epochs ? ` / ${j.epochs}` : ''}`
    : (lastEpoch ? String(lastEpoch.epoch) : '-');
  $('stat-step').textContent = last ? `${last[2]} / ${state.stepsPerEpoch}` : '-';
  $('stat-loss').textContent = last ? fmt(last[3]) : '-';
  $('stat-speed').textContent = last ? fmt(last[4], 1) : '-';
  $('stat-acc').textContent = lastEpoch ? fmt(lastEpoch.val_accuracy) : '-';
  $('stat-best').textContent = state.best ? `${fmt(state.best.accuracy)} (e${state.best.epoch})` : '-';
  $('stat-generation').textContent = state.generation === null ? '-' : String(state.generation);
}

// Redraws are batched to one per animation frame, whatever the rate of updates.
const dirty = new Set();
let scheduled = false;
const DRAW = {
  header: drawHeader, loss: drawLoss, acc: drawAccuracy, speed: drawSpeed, workers: drawWorkers, ring: drawRing,
  events: drawEvents,
};
function redraw(...parts) {
  for (const p of parts) dirty.add(p);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    for (const p of dirty) DRAW[p]();
    dirty.clear();
  });
}

function setConnection(text) {
  const c = $('connection');
  c.textContent = text;
  c.className = `badge ${text}`;
}

function thin(steps) {
  if (steps.length <= MAX_POINTS) return steps;
  const half = steps.length >> 1;
  return [...steps.slice(0, half).filter((_, i) => i % 2 === 1), ...steps.slice(half)];
}

const handlers = {
  snapshot(d) {
    state.skew = d.now - Date.now();
    Object.assign(state, {
      status: d.status, message: d.message, job: d.job, generation: d.generation, ring: d.ring, steps: d.steps,
      stepsPerEpoch: d.stepsPerEpoch, epochs: d.epochs, events: d.events, best: d.best,
    });
    state.workers = new Map(d.workers.map((w) => [w.memberId, w]));
    redraw(...Object.keys(DRAW));
  },
  step(d) {
    state.steps.push(d.point);
    state.steps = thin(state.steps);
    state.stepsPerEpoch = d.steps;
    for (const r of d.ranks) {
      const w = state.workers.get(r.memberId);
      if (w) w.images_per_s = r.images_per_s;
    }
    redraw('header', 'loss', 'speed', 'workers');
  },
  epoch(d) {
    state.epochs.push(d);
    redraw('header', 'loss', 'acc');
  },
  members(d) {
    state.generation = d.generation;
    state.ring = d.ring;
    state.workers = new Map(d.workers.map((w) => [w.memberId, w]));
    redraw('header', 'workers', 'ring');
  },
  event(d) {
    state.events.push(d);
    if (state.events.length > 500) state.events.splice(0, state.events.length - 500);
    redraw('events');
  },
  heartbeats(d) {
    state.skew = d.now - Date.now();
    for (const [id, last] of Object.entries(d.beats)) {
      const w = state.workers.get(id);
      if (w) w.lastHeartbeat = last;
    }
    redraw('workers');
  },
  status(d) {
    state.status = d.status;
    state.message = d.message;
    state.best = d.best;
    redraw('header', 'acc');
  },
};

function connect() {
  const source = new EventSource('events');
  source.onopen = () => setConnection('live');
  source.onerror = () => {
    // A finished or failed run's coordinator has gone away: stop, do not retry forever.
    if (state.status === 'finished' || state.status === 'failed') {
      source.close();
      setConnection('ended');
    } else {
      setConnection('reconnecting');
    }
  };
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  }
  window.wolfpackDashboard = { state, source };
}

connect();
// Heartbeat ages count up between updates (a local clock tick; nothing is fetched).
window.setInterval(() => redraw('workers'), 1000);
