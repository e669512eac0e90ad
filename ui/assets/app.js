// The built-in savings page: reads /metrics/api-savings,
// /metrics/tool-breakdown and /metrics/spend for the chosen range and
// client, shows the figures, draws the trend as inline SVG and refreshes by
// itself: on every operation the live stream (/stream/operations, through
// EventSource) announces, and by a slow poll besides; while the stream is
// down, by the poll at the refresh interval.
//
// Every figure element carries data-figure="<name>", where <name> is the
// figure's JSON path in the /metrics/api-savings answer (total_cost_saved,
// breakdown_by_mode.full.tokens_prevented), or "tool_breakdown." and its
// path in the /metrics/tool-breakdown answer (tool_breakdown.read.by_mode.full.count),
// or "spend." and its path in the /metrics/spend answer (spend.by_model.sonnet.cost_usd).
'use strict';

(function () {
  const RANGES = ['1h', '24h', '7d', '30d', 'all'];
  // /metrics/tool-breakdown has no "all".
  const BREAKDOWN_RANGES = new Set(['1h', '24h', '7d', '30d']);
  const RANGE_LABELS = { '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days', '30d': 'last 30 days', all: 'all time' };
  const TOOLS = ['read', 'search'];
  const ALL = 'all';
  const TOKEN_KEY = 'omnimemory.apiToken';
  const DEFAULT_REFRESH_MS = 30000;
  const MIN_REFRESH_MS = 1000;
  const STREAM_PATH = '/stream/operations';
  // While the stream is open the page still polls, this seldom: windows
  // slide as time passes, and on a store that replicas do not share
  // another replica's operations are not on this one's stream.
  const LIVE_POLL_MS = 300000;
  // Operations that come close together cause one refresh.
  const EVENT_REFRESH_MS = 500;
  // A stream the service refused (or that cannot be opened) is tried again
  // this long after.
  const STREAM_RETRY_MS = 30000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // Number formats: thousands separators, money with 2 to 4 decimals,
  // percentages with 2.
  const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const usdFmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4 });
  const pctFmt = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const msFmt = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
  const hourFmt = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const dayFmt = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', month: 'short', day: 'numeric' });
  const fullFmt = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });
  const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  function formatInt(v) { return intFmt.format(v); }
  function formatUSD(v) {
    // A cost too small for 4 decimals is not shown as $0.00.
    if (v !== 0 && Math.abs(v) < 0.00005) return v > 0 ? '<$0.0001' : '>-$0.0001';
    return usdFmt.format(v);
  }
  function formatPct(v) { return pctFmt.format(v) + '%'; }
  function formatMs(v) { return msFmt.format(v); }

  // format answers the text of the figure whose JSON key is key.
  function format(key, v) {
    if (typeof v !== 'number' || !isFinite(v)) return '–';
    if (key === 'savings_percentage' || key === 'savings_share_percentage') return formatPct(v);
    if (key === 'avg_response_time_ms') return formatMs(v);
    if (key.indexOf('cost') !== -1) return formatUSD(v);
    return formatInt(v);
  }

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const main = $('main');
  const form = $('controls');
  const toolInput = $('tool-id');
  const errorBox = $('error');
  const tokenForm = $('token-form');
  const tokenInput = $('token');
  const tokenMessage = $('token-message');
  const tokenMessageDefault = tokenMessage.innerHTML;
  const updated = $('updated');

  // ---- state in the URL ----

  function parseInterval(s) {
    if (!s) return DEFAULT_REFRESH_MS;
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
    if (!m) return DEFAULT_REFRESH_MS;
    const n = parseFloat(m[1]) * ({ ms: 1, s: 1000, m: 60000 })[m[2] || 's'];
    return Math.max(MIN_REFRESH_MS, n);
  }

  function readQuery() {
    const q = new URLSearchParams(location.search);
    let range = q.get('time_range') || '24h';
    if (RANGES.indexOf(range) === -1) range = '24h';
    let tool = (q.get('tool_id') || '').trim();
    if (tool === '') tool = ALL;
    return { range: range, tool: tool, refreshMs: parseInterval(q.get('refresh')) };
  }

  function writeQuery(push) {
    const q = new URLSearchParams(location.search);
    q.set('time_range', state.range);
    if (state.tool === ALL) q.delete('tool_id'); else q.set('tool_id', state.tool);
    const url = location.pathname + '?' + q.toString() + location.hash;
    if (url === location.pathname + location.search + location.hash) return;
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
  }

  function syncControls() {
    const radio = $('range-' + state.range);
    if (radio) radio.checked = true;
    toolInput.value = state.tool;
  }

  let state = readQuery();

  // ---- the API ----

  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }
  function storeToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage off: ask again next time */ }
  }

  class APIError extends Error {
    constructor(status, detail, sentToken) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.sentToken = sentToken;
    }
  }

  function detailOf(answer) {
    if (!answer || answer.detail === undefined) return '';
    if (typeof answer.detail === 'string') return answer.detail;
    if (Array.isArray(answer.detail)) return answer.detail.map((d) => (d && d.msg) || String(d)).join('; ');
    return String(answer.detail);
  }

  async function getJSON(path, params, signal) {
    const qs = new URLSearchParams(params).toString();
    const headers = { Accept: 'application/json' };
    const token = storedToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    let res;
    try {
      res = await fetch(path + (qs ? '?' + qs : ''), { headers: headers, signal: signal, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new APIError(0, 'Cannot reach the service: ' + (e && e.message ? e.message : 'network error'), token);
    }
    let answer = null;
    try { answer = await res.json(); } catch (_) { /* not JSON: the status speaks */ }
    if (!res.ok) throw new APIError(res.status, detailOf(answer) || res.statusText || 'error', token);
    return answer;
  }

  // ---- loading ----

  let seq = 0;
  let controller = null;
  let timer = 0;
  let loads = 0;
  let lastGood = null; // Date of the last shown figures
  let lastFailed = false;
  let clientsLoaded = false;

  // The poll's interval: slow while the stream is open, unless the last
  // load failed (it is retried at the refresh interval).
  function pollMs() {
    return live && !lastFailed ? Math.max(state.refreshMs, LIVE_POLL_MS) : state.refreshMs;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(load, pollMs());
  }

  // ---- the live stream ----

  let stream = null; // the EventSource
  let streamKey = ''; // the query it was opened with
  let live = false; // open and delivering
  let eventTimer = 0;
  let streamRetry = 0;

  // refreshSoon loads again shortly: at most one load per EVENT_REFRESH_MS
  // however many operations come.
  function refreshSoon() {
    if (eventTimer) return;
    eventTimer = setTimeout(() => { eventTimer = 0; load(); }, EVENT_REFRESH_MS);
  }

  function setLive(on) {
    if (live === on) return;
    live = on;
    body.dataset.stream = on ? 'open' : 'closed';
    if (lastGood && !lastFailed) showUpdated(body.dataset.updated);
    schedule();
  }

  function closeStream() {
    clearTimeout(streamRetry);
    if (stream) stream.close();
    stream = null;
    streamKey = '';
    setLive(false);
  }

  // openStream follows the operations of the shown client. A browser's
  // EventSource sends no headers, so the token goes as access_token.
  function openStream() {
    if (typeof EventSource === 'undefined') return;
    const params = {};
    if (state.tool !== ALL) params.tool_id = state.tool;
    const token = storedToken();
    if (token) params.access_token = token;
    const qs = new URLSearchParams(params).toString();
    if (stream && streamKey === qs) return;
    closeStream();
    const es = new EventSource(STREAM_PATH + (qs ? '?' + qs : ''));
    stream = es;
    streamKey = qs;
    es.onopen = () => {
      if (stream !== es) return;
      setLive(true);
      refreshSoon(); // what came while it was opening
    };
    es.onmessage = () => { if (stream === es) refreshSoon(); };
    // The service says operations may have been missed: the figures are
    // read again either way.
    es.addEventListener('reset', () => { if (stream === es) refreshSoon(); });
    es.onerror = () => {
      if (stream !== es) return;
      setLive(false); // the poll takes over; EventSource reconnects by itself
      if (es.readyState === EventSource.CLOSED) { // refused: try again later
        closeStream();
        streamRetry = setTimeout(openStream, STREAM_RETRY_MS);
      }
    };
  }

  async function load() {
    clearTimeout(timer);
    if (controller) controller.abort();
    controller = new AbortController();
    const signal = controller.signal;
    const my = ++seq;
    const range = state.range;
    const tool = state.tool;
    const params = { time_range: range };
    if (tool !== ALL) params.tool_id = tool;
    main.setAttribute('aria-busy', 'true');
    let again = true;
    try {
      const [savings, breakdown, spend] = await Promise.all([
        getJSON('/metrics/api-savings', params, signal),
        BREAKDOWN_RANGES.has(range) ? getJSON('/metrics/tool-breakdown', params, signal) : Promise.resolve(null),
        getJSON('/metrics/spend', params, signal),
      ]);
      if (my !== seq) return;
      render(savings, breakdown, range, tool);
      renderSpend(spend);
      errorBox.hidden = true;
      tokenForm.hidden = true;
      loads++;
      lastFailed = false;
      lastGood = new Date();
      body.dataset.range = range;
      body.dataset.tool = tool;
      body.dataset.updated = savings.calculated_at;
      body.dataset.loads = String(loads);
      body.dataset.state = 'ready';
      showUpdated(savings.calculated_at);
      openStream();
      if (!clientsLoaded) { clientsLoaded = true; loadClients(); }
    } catch (e) {
      if ((e && e.name === 'AbortError') || my !== seq) return;
      if (e instanceof APIError && e.status === 401) {
        again = false; // nothing to refresh until there is a token
        closeStream();
        askToken(e);
        return;
      }
      lastFailed = true;
      showError(e);
    } finally {
      if (my === seq) {
        main.setAttribute('aria-busy', 'false');
        if (again) schedule();
      }
    }
  }

  function showUpdated(calculatedAt) {
    const at = new Date(calculatedAt);
    const every = state.refreshMs >= 60000 ? (state.refreshMs / 60000) + ' min' : (state.refreshMs / 1000) + ' s';
    updated.className = 'live';
    updated.textContent = '';
    updated.append('Updated at ');
    const t = document.createElement('time');
    t.dateTime = calculatedAt;
    t.textContent = isNaN(at) ? calculatedAt : clockFmt.format(at);
    updated.append(t, live ? ' · live: refreshes as operations arrive' : ' · refreshes every ' + every);
  }

  function showError(e) {
    const status = e instanceof APIError ? e.status : 0;
    let text;
    if (status === 0) {
      text = (e && e.message) || 'Cannot reach the service.';
    } else if (status >= 500) {
      text = 'The service could not answer (HTTP ' + status + '): ' + e.detail;
    } else {
      text = 'The service refused the request (HTTP ' + status + '): ' + e.detail;
    }
    const every = state.refreshMs / 1000;
    text = text.replace(/[.\s]+$/, '') + '. Retrying every ' + every + ' s.';
    if (lastGood) text += ' The figures below are from ' + clockFmt.format(lastGood) + '.';
    errorBox.textContent = text;
    errorBox.hidden = false;
    errorBox.dataset.status = String(status);
    body.dataset.state = 'error';
    updated.className = 'stale';
    updated.textContent = 'Update failed at ' + clockFmt.format(new Date());
  }

  function askToken(e) {
    // A token that was sent and refused is dropped, and asked for again.
    if (e.sentToken) {
      storeToken('');
      tokenMessage.textContent = 'The service refused this token (' + e.detail + '). Enter the API token again.';
    } else {
      tokenMessage.innerHTML = tokenMessageDefault;
    }
    errorBox.hidden = true;
    tokenForm.hidden = false;
    body.dataset.state = 'auth';
    updated.className = 'stale';
    updated.textContent = 'Waiting for an API token';
    tokenInput.focus();
  }

  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = tokenInput.value.trim();
    if (!t) return;
    storeToken(t);
    tokenInput.value = '';
    tokenForm.hidden = true;
    body.dataset.state = 'loading';
    load();
  });

  // loadClients fills the client suggestions from the recent operations and
  // the active sessions; it is a convenience, so failures are ignored.
  async function loadClients() {
    const ids = new Set();
    const answers = await Promise.allSettled([
      getJSON('/metrics/tool-operations', { limit: '200' }),
      getJSON('/sessions/active', {}),
    ]);
    if (answers[0].status === 'fulfilled') for (const op of answers[0].value.operations || []) ids.add(op.tool_id);
    if (answers[1].status === 'fulfilled') for (const s of answers[1].value.active_sessions || []) ids.add(s.tool_id);
    if (state.tool !== ALL) ids.add(state.tool);
    ids.delete(ALL);
    const list = $('known-clients');
    list.textContent = '';
    for (const id of [ALL].concat(Array.from(ids).filter(Boolean).sort())) {
      const o = document.createElement('option');
      o.value = id;
      list.append(o);
    }
  }

  // ---- rendering ----

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // cell answers a table cell showing the figure name (key is its JSON key).
  function cell(name, key, value) {
    return el('td', { class: 'num', 'data-figure': name }, format(key, value));
  }
  function emptyCell() {
    return el('td', { class: 'num none', 'aria-label': 'not available' }, '—');
  }

  function byPrevented(entries, prevented) {
    return entries.sort((a, b) => prevented(b[1]) - prevented(a[1]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  function render(s, b, range, tool) {
    for (const key of ['total_tokens_prevented', 'total_cost_saved', 'savings_percentage', 'total_operations',
      'api_cost_baseline', 'api_cost_actual', 'total_tokens_processed']) {
      document.querySelector('[data-figure="' + key + '"]').textContent = format(key, s[key]);
    }
    const scope = RANGE_LABELS[range] + ' · ' + (tool === ALL ? 'all clients' : 'client ' + tool);
    $('scope').textContent = '· ' + scope;
    drawCost(s.api_cost_baseline, s.api_cost_actual);
    drawTrend(s.trends || [], range);
    renderTools(s, b);
    renderModes(s.breakdown_by_mode || {});
  }

  function renderTools(s, b) {
    const tbody = $('tools-body');
    const tfoot = $('tools-foot');
    tbody.textContent = '';
    tfoot.textContent = '';
    for (const name of TOOLS) {
      const saved = (s.breakdown_by_tool || {})[name] || {};
      const row = el('tr', { class: 'tool' });
      row.append(el('th', { scope: 'row' }, name));
      if (b) {
        const t = b[name] || {};
        const p = 'tool_breakdown.' + name + '.';
        row.append(
          cell(p + 'total_operations', 'total_operations', t.total_operations),
          cell(p + 'total_tokens_original', 'total_tokens_original', t.total_tokens_original),
          cell(p + 'total_tokens_actual', 'total_tokens_actual', t.total_tokens_actual),
          cell(p + 'total_tokens_prevented', 'total_tokens_prevented', t.total_tokens_prevented),
          cell('breakdown_by_tool.' + name + '.cost_saved', 'cost_saved', saved.cost_saved),
          cell(p + 'avg_response_time_ms', 'avg_response_time_ms', t.avg_response_time_ms));
        tbody.append(row);
        for (const [mode, m] of byPrevented(Object.entries(t.by_mode || {}), (m) => m.tokens_prevented)) {
          const mp = p + 'by_mode.' + mode + '.';
          const mr = el('tr', { class: 'mode' });
          mr.append(el('th', { scope: 'row' }, mode),
            cell(mp + 'count', 'count', m.count), emptyCell(), emptyCell(),
            cell(mp + 'tokens_prevented', 'tokens_prevented', m.tokens_prevented), emptyCell(),
            cell(mp + 'avg_response_time_ms', 'avg_response_time_ms', m.avg_response_time_ms));
          tbody.append(mr);
        }
      } else {
        const p = 'breakdown_by_tool.' + name + '.';
        row.append(cell(p + 'operations', 'operations', saved.operations), emptyCell(), emptyCell(),
          cell(p + 'tokens_prevented', 'tokens_prevented', saved.tokens_prevented),
          cell(p + 'cost_saved', 'cost_saved', saved.cost_saved), emptyCell());
        tbody.append(row);
      }
    }
    if (b) {
      const f = el('tr');
      f.append(el('th', { scope: 'row' }, 'Total'), el('td'), el('td'), el('td'),
        cell('tool_breakdown.total_tokens_prevented', 'total_tokens_prevented', b.total_tokens_prevented),
        cell('tool_breakdown.total_cost_saved', 'total_cost_saved', b.total_cost_saved), el('td'));
      tfoot.append(f);
      $('tools-note').textContent = 'Modes are listed under the tool that ran them.';
    } else {
      $('tools-note').textContent = 'Tokens original and actual, modes per tool and response times are kept for ranges up to 30 days.';
    }
  }

  function renderModes(modes) {
    const tbody = $('modes-body');
    tbody.textContent = '';
    const entries = byPrevented(Object.entries(modes), (m) => m.tokens_prevented);
    if (!entries.length) {
      const r = el('tr');
      r.append(el('td', { colspan: '4', class: 'none' }, 'No operations in this range.'));
      tbody.append(r);
      return;
    }
    for (const [mode, m] of entries) {
      const p = 'breakdown_by_mode.' + mode + '.';
      const r = el('tr');
      r.append(el('th', { scope: 'row' }, mode),
        cell(p + 'operations', 'operations', m.operations),
        cell(p + 'tokens_prevented', 'tokens_prevented', m.tokens_prevented),
        cell(p + 'cost_saved', 'cost_saved', m.cost_saved));
      tbody.append(r);
    }
  }

  function renderSpend(sp) {
    const section = $('spend');
    const cards = $('spend-cards');
    const tbody = $('spend-models-body');
    cards.textContent = '';
    tbody.textContent = '';
    section.hidden = !sp;
    if (!sp) return;
    for (const [key, label, note] of [
      ['cost_spent_usd', 'Spent', 'as the tools report it'],
      ['cost_saved_usd', 'Saved', 'by the operations, same window'],
      ['savings_share_percentage', 'Savings share', 'saved of spent plus saved'],
    ]) {
      const card = el('div', { class: key === 'cost_saved_usd' ? 'card accent' : 'card' });
      const id = 'l-spend-' + key;
      card.append(el('h3', { id: id }, label),
        el('p', { class: 'value', 'data-figure': 'spend.' + key, 'aria-labelledby': id }, format(key, sp[key])),
        el('p', { class: 'note' }, note));
      cards.append(card);
    }
    const entries = Object.entries(sp.by_model || {}).sort((a, b) => b[1].cost_usd - a[1].cost_usd || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (!entries.length) {
      const r = el('tr');
      r.append(el('td', { colspan: '6', class: 'none' }, 'No spend reported in this range.'));
      tbody.append(r);
      return;
    }
    for (const [model, m] of entries) {
      const p = 'spend.by_model.' + model + '.';
      const r = el('tr');
      r.append(el('th', { scope: 'row' }, model));
      for (const k of ['cost_usd', 'input', 'output', 'cache_read', 'cache_creation']) r.append(cell(p + k, k, m[k]));
      tbody.append(r);
    }
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawCost(baseline, actual) {
    const svg = $('cost-bars');
    svg.textContent = '';
    const W = 400;
    const wb = baseline > 0 ? W : 0;
    const wa = baseline > 0 ? Math.max(0, Math.min(W, W * actual / baseline)) : 0;
    const rb = svgEl('rect', { class: 'baseline', x: '0', y: '4', width: String(wb), height: '24', rx: '3' });
    rb.append(svgEl('title', {}, 'Baseline ' + formatUSD(baseline)));
    const ra = svgEl('rect', { class: 'actual', x: '0', y: '36', width: String(wa), height: '24', rx: '3' });
    ra.append(svgEl('title', {}, 'Actual ' + formatUSD(actual)));
    svg.append(rb, ra);
    svg.setAttribute('aria-label', 'Baseline cost ' + formatUSD(baseline) + ' compared with actual cost ' + formatUSD(actual));
  }

  // niceStep answers a round step (1, 2 or 5 times a power of ten) near span/n.
  function niceStep(span, n) {
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  function drawTrend(trends, range) {
    const svg = $('trend');
    svg.textContent = '';
    const hourly = range === '1h' || range === '24h';
    $('trend-step').textContent = hourly ? '· per hour (UTC)' : '· per day (UTC)';
    svg.dataset.buckets = String(trends.length);
    const W = 1000, H = 260, L = 64, R = 12, T = 14, B = 30;
    const pw = W - L - R, ph = H - T - B;
    const caption = $('trend-caption');
    if (!trends.length) {
      svg.append(svgEl('text', { class: 'empty', x: String(W / 2), y: String(H / 2), 'text-anchor': 'middle' }, 'No operations in this range.'));
      svg.setAttribute('aria-label', 'No operations in this range.');
      caption.textContent = '';
      return;
    }
    const vals = trends.map((p) => p.tokens_prevented);
    let max = Math.max(0, ...vals);
    let min = Math.min(0, ...vals);
    if (max === min) max = min + 1;
    const step = niceStep(max - min, 4);
    max = Math.ceil(max / step) * step;
    min = Math.floor(min / step) * step;
    const y = (v) => T + (max - v) / (max - min) * ph;
    for (let t = min; t <= max + step / 2; t += step) {
      const yy = y(t).toFixed(1);
      svg.append(svgEl('line', { class: t === 0 ? 'axis' : 'grid', x1: String(L), x2: String(W - R), y1: yy, y2: yy }));
      svg.append(svgEl('text', { x: String(L - 8), y: (y(t) + 4).toFixed(1), 'text-anchor': 'end' }, compactFmt.format(t)));
    }
    const slot = pw / trends.length;
    const bw = Math.max(1, slot * 0.72);
    const label = (ts) => (hourly ? hourFmt : dayFmt).format(new Date(ts));
    let peak = trends[0];
    trends.forEach((p, i) => {
      if (p.tokens_prevented > peak.tokens_prevented) peak = p;
      const x = L + i * slot + (slot - bw) / 2;
      const top = y(Math.max(0, p.tokens_prevented));
      const h = Math.abs(y(p.tokens_prevented) - y(0));
      const r = svgEl('rect', {
        class: p.tokens_prevented < 0 ? 'bar neg' : 'bar',
        x: x.toFixed(2), y: top.toFixed(2), width: bw.toFixed(2), height: h.toFixed(2),
        'data-timestamp': p.timestamp, 'data-value': String(p.tokens_prevented),
      });
      r.append(svgEl('title', {}, fullFmt.format(new Date(p.timestamp)) + ': ' + formatInt(p.tokens_prevented) +
        ' tokens prevented, ' + formatUSD(p.cost_saved) + ' saved, ' + formatInt(p.operations) + ' operations'));
      svg.append(r);
    });
    const every = Math.ceil(trends.length / 6);
    for (let i = 0; i < trends.length; i += every) {
      svg.append(svgEl('text', { x: (L + (i + 0.5) * slot).toFixed(1), y: String(H - B + 18), 'text-anchor': 'middle' }, label(trends[i].timestamp)));
    }
    const first = fullFmt.format(new Date(trends[0].timestamp));
    const last = fullFmt.format(new Date(trends[trends.length - 1].timestamp));
    const unit = hourly ? 'hour' : 'day';
    svg.setAttribute('aria-label', 'Bar chart of tokens prevented per ' + unit + ', ' + trends.length + ' bars from ' + first +
      ' to ' + last + '; the most, ' + formatInt(peak.tokens_prevented) + ', in the ' + unit + ' of ' + fullFmt.format(new Date(peak.timestamp)) + '.');
    caption.textContent = trends.length + ' ' + unit + 's, from ' + first + ' to ' + last + '. Point at a bar for its figures.';
  }

  // ---- controls ----

  function apply(range, tool, force) {
    tool = (tool || '').trim() || ALL;
    if (!force && range === state.range && tool === state.tool) return;
    state.range = range;
    state.tool = tool;
    writeQuery(true);
    syncControls();
    load();
  }

  form.addEventListener('change', (ev) => {
    if (ev.target.name === 'time_range') apply(ev.target.value, state.tool, false);
    else if (ev.target === toolInput) apply(state.range, toolInput.value, false);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const checked = form.querySelector('input[name="time_range"]:checked');
    apply(checked ? checked.value : state.range, toolInput.value, true);
  });
  window.addEventListener('popstate', () => {
    state = readQuery();
    syncControls();
    load();
  });

  syncControls();
  writeQuery(false);
  load();
})();
