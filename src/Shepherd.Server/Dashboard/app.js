// Shepherd dashboard: plain JavaScript, no build step, no libraries.
// Every string from the server reaches the page through textContent or attributes, never innerHTML.
(function () {
  'use strict';

  var KEY_STORAGE = 'shepherd.key';
  var LIST_POLL_MS = 2000;
  var RUNNING_POLL_MS = 1000;
  var ENDED_POLL_MS = 5000;
  var ACTIVE_STATUSES = ['validating', 'in_progress'];

  var state = {
    key: null,          // null: none chosen yet; '' is a valid (empty) key
    generation: 0,      // bumped on every navigation so stale polls stop
    timer: 0,
    batches: [],
    detail: null,
  };

  // ---------- small helpers ----------

  function $(selector, root) { return (root || document).querySelector(selector); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === 'text') node.textContent = String(value);
        else if (name === 'className') node.className = value;
        else node.setAttribute(name, value === true ? '' : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function setText(selector, value) {
    var node = typeof selector === 'string' ? $(selector) : selector;
    var text = value === null || value === undefined ? '' : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function num(value) {
    if (value === null || value === undefined || isNaN(value)) return '—';
    return Number(value).toLocaleString('en-US');
  }

  function compact(value) {
    if (value === null || value === undefined || isNaN(value)) return '—';
    var n = Number(value);
    var abs = Math.abs(n);
    if (abs >= 1e9) return trim(n / 1e9) + 'B';
    if (abs >= 1e6) return trim(n / 1e6) + 'M';
    if (abs >= 1e4) return trim(n / 1e3) + 'k';
    return trim(n);
  }

  function trim(n) {
    var abs = Math.abs(n);
    var digits = abs >= 100 || Number.isInteger(n) ? 0 : abs >= 10 ? 1 : 2;
    return Number(n.toFixed(digits)).toLocaleString('en-US');
  }

  function usd(value) {
    return '$' + (Number(value) || 0).toFixed(4);
  }

  function ms(value) {
    if (value === null || value === undefined || isNaN(value)) return '—';
    var n = Number(value);
    return (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1)) + ' ms';
  }

  function nowSeconds() { return Date.now() / 1000; }

  function age(unixSeconds) {
    var s = Math.max(0, nowSeconds() - unixSeconds);
    if (s < 60) return Math.floor(s) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h';
    return Math.floor(s / 86400) + ' d';
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return '—';
    var s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function clock(unixSeconds) {
    var d = new Date(unixSeconds * 1000);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function dateTime(unixSeconds) {
    if (unixSeconds === null || unixSeconds === undefined) return '—';
    var d = new Date(unixSeconds * 1000);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock(unixSeconds);
  }

  function statusLabel(status) { return String(status || 'unknown').replace(/_/g, ' '); }

  function isActive(batch) { return ACTIVE_STATUSES.indexOf(batch.status) >= 0; }

  function hasEnded(batch) { return batch.ended_at !== null && batch.ended_at !== undefined; }

  function percentOf(batch) {
    var p = Number(batch.percent);
    if (isNaN(p)) p = batch.total ? (100 * batch.finished) / batch.total : 0;
    return Math.max(0, Math.min(100, p));
  }

  function applyStatusClass(node, prefix, status) {
    var wanted = prefix + ' s-' + String(status || 'unknown').replace(/[^a-z_]/gi, '');
    if (node.className !== wanted) node.className = wanted;
  }

  function updateBadge(node, status) {
    applyStatusClass(node, 'badge', status);
    node.setAttribute('data-status', status || '');
    setText(node, statusLabel(status));
  }

  function updateProgress(node, batch) {
    var percent = percentOf(batch);
    applyStatusClass(node, node.classList.contains('large') ? 'progress large' : 'progress', batch.status);
    node.setAttribute('aria-valuenow', percent.toFixed(1));
    var bar = $('.bar', node);
    var width = percent.toFixed(1) + '%';
    if (bar.style.width !== width) bar.style.width = width;
  }

  // ---------- talking to the server ----------

  function AuthError(message) { this.message = message; }
  function ApiError(status, message) { this.status = status; this.message = message; }

  function errorMessage(response) {
    return response.text().then(function (text) {
      try {
        var body = JSON.parse(text);
        if (body && body.error && body.error.message) return String(body.error.message);
      } catch (ignored) { /* not JSON: use the status line */ }
      return 'HTTP ' + response.status + (response.statusText ? ' ' + response.statusText : '');
    }, function () { return 'HTTP ' + response.status; });
  }

  function api(path, options) {
    var init = options || {};
    var headers = new Headers(init.headers || {});
    if (state.key) headers.set('Authorization', 'Bearer ' + state.key);
    return fetch(path, { method: init.method || 'GET', headers: headers, cache: 'no-store' }).then(function (response) {
      if (response.ok) return response;
      return errorMessage(response).then(function (message) {
        throw response.status === 401 ? new AuthError(message) : new ApiError(response.status, message);
      });
    });
  }

  function json(path, options) {
    return api(path, options).then(function (response) { return response.json(); });
  }

  function batchPath(id) { return '/v1/dashboard/batches/' + encodeURIComponent(id); }

  // ---------- connection indicator and notices ----------

  function markLive() {
    var live = $('#live');
    live.hidden = false;
    live.classList.remove('down');
    setText(live, 'Live · updated ' + clock(nowSeconds()));
  }

  function markDown(message) {
    var live = $('#live');
    live.hidden = false;
    live.classList.add('down');
    setText(live, message);
  }

  function notice(message) {
    var node = $('#notice');
    node.hidden = !message;
    setText(node, message || '');
  }

  function handleFailure(error, generation) {
    if (generation !== state.generation) return false;
    if (error instanceof AuthError) {
      showKeyForm('The server refused the key: ' + error.message);
      return false;
    }
    if (error instanceof ApiError) {
      notice(error.message + ' (HTTP ' + error.status + ')');
      markDown('Error · retrying');
      return true;
    }
    markDown('Server unreachable · retrying');
    return true;
  }

  // ---------- scheduling ----------

  function schedule(load, delay, generation) {
    if (generation !== state.generation) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(function () {
      if (generation === state.generation) load(generation);
    }, delay);
  }

  function stopPolling() {
    state.generation += 1;
    clearTimeout(state.timer);
  }

  // ---------- views ----------

  function show(view) {
    ['key-view', 'list-view', 'batch-view'].forEach(function (id) { $('#' + id).hidden = id !== view; });
    $('#key-forget').hidden = view === 'key-view' || state.key === null;
  }

  function showKeyForm(message) {
    stopPolling();
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    notice('');
    $('#live').hidden = true;
    var text = $('#key-message');
    text.hidden = !message;
    setText(text, message || '');
    show('key-view');
    document.title = 'Shepherd · Sign in';
    var input = $('#key-input');
    input.value = '';
    input.focus();
  }

  function route() {
    stopPolling();
    notice('');
    state.key = sessionStorage.getItem(KEY_STORAGE);
    if (state.key === null) {
      showKeyForm(null);
      return;
    }
    var match = /^#\/batch\/(.+)$/.exec(location.hash);
    if (match) {
      var id;
      try { id = decodeURIComponent(match[1]); } catch (e) { id = match[1]; }
      openBatch(id);
    } else {
      openList();
    }
  }

  // ---------- list view ----------

  function openList() {
    show('list-view');
    document.title = 'Shepherd · Batches';
    loadList(state.generation);
  }

  function loadList(generation) {
    json('/v1/dashboard/batches?limit=100').then(function (body) {
      if (generation !== state.generation) return;
      state.batches = Array.isArray(body.data) ? body.data : [];
      notice('');
      renderList();
      markLive();
      schedule(loadList, LIST_POLL_MS, generation);
    }, function (error) {
      if (handleFailure(error, generation)) schedule(loadList, LIST_POLL_MS, generation);
    });
  }

  function matchesFilter(batch, filter) {
    if (!filter) return true;
    var haystack = [batch.id, batch.door, batch.status, statusLabel(batch.status), batch.model, batch.endpoint]
      .concat(batch.metadata ? Object.keys(batch.metadata).map(function (k) { return k + ' ' + batch.metadata[k]; }) : [])
      .join(' ').toLowerCase();
    return filter.split(/\s+/).every(function (word) { return haystack.indexOf(word) >= 0; });
  }

  function renderList() {
    var batches = state.batches;
    var filter = $('#filter').value.trim().toLowerCase();
    var shown = batches.filter(function (b) { return matchesFilter(b, filter); });
    var running = batches.filter(function (b) { return !hasEnded(b); }).length;
    var cost = batches.reduce(function (sum, b) { return sum + (Number(b.cost_usd) || 0); }, 0);
    setText('#list-summary', batches.length === 0 ? 'Nothing submitted with this key yet.'
      : num(batches.length) + (batches.length === 1 ? ' batch' : ' batches') + ' · ' + num(running) + ' running · ' + usd(cost) + ' total'
        + (filter ? ' · ' + num(shown.length) + ' shown' : ''));

    var tbody = $('#batches tbody');
    if (shown.length === 0) {
      var message = batches.length === 0 ? 'No batches yet' : 'No batch matches the filter';
      var only = tbody.children.length === 1 ? tbody.firstElementChild : null;
      if (!only || !only.classList.contains('empty-row') || only.textContent !== message) {
        tbody.replaceChildren(el('tr', { className: 'empty-row' }, [el('td', { className: 'empty', colspan: 8, text: message })]));
      }
      return;
    }

    var existing = {};
    Array.prototype.forEach.call(tbody.querySelectorAll('tr[data-batch-id]'), function (tr) {
      existing[tr.getAttribute('data-batch-id')] = tr;
    });
    var rows = shown.map(function (batch) {
      var tr = Object.prototype.hasOwnProperty.call(existing, batch.id) ? existing[batch.id] : createRow(batch.id);
      updateRow(tr, batch);
      return tr;
    });
    var same = rows.length === tbody.children.length && rows.every(function (tr, i) { return tbody.children[i] === tr; });
    if (!same) tbody.replaceChildren.apply(tbody, rows);
  }

  function createRow(id) {
    var href = '#/batch/' + encodeURIComponent(id);
    var tr = el('tr', { 'data-batch-id': id }, [
      el('td', { className: 'id-cell' }, [el('a', { href: href, text: id }), el('div', { className: 'sub' })]),
      el('td', null, [el('span', { className: 'door' })]),
      el('td', null, [el('span', { className: 'badge' })]),
      el('td', null, [el('div', { className: 'progress-cell' }, [
        el('div', { className: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, [el('div', { className: 'bar' })]),
        el('span', { className: 'ptext' }),
      ])]),
      el('td', { className: 'num succeeded' }),
      el('td', { className: 'num failed' }),
      el('td', { className: 'num cost' }),
      el('td', { className: 'num age' }),
    ]);
    tr.addEventListener('click', function (event) {
      if (event.target.closest('a') || (window.getSelection && String(window.getSelection()))) return;
      location.hash = href;
    });
    return tr;
  }

  function updateRow(tr, batch) {
    var sub = [batch.model, batch.endpoint].filter(Boolean).join(' · ');
    var subNode = $('.sub', tr);
    setText(subNode, sub);
    subNode.title = sub;
    setText($('.door', tr), batch.door);
    updateBadge($('.badge', tr), batch.status);
    var progress = $('.progress', tr);
    updateProgress(progress, batch);
    setText($('.ptext', tr), num(batch.finished) + ' / ' + num(batch.total));
    setText($('.succeeded', tr), num(batch.succeeded));
    var failed = $('.failed', tr);
    setText(failed, num(batch.failed));
    failed.classList.toggle('bad-text', Number(batch.failed) > 0);
    setText($('.cost', tr), usd(batch.cost_usd));
    var ageCell = $('.age', tr);
    setText(ageCell, age(batch.created_at));
    ageCell.title = 'Created ' + dateTime(batch.created_at);
  }

  // ---------- batch view ----------

  function openBatch(id) {
    state.detail = null;
    show('batch-view');
    setText('#batch-id', id);
    updateBadge($('#batch-status'), 'loading');
    setText('#batch-status', '…');
    setText('#batch-meta', '');
    $('#cancel').hidden = true;
    $('#batch-body').hidden = false;
    document.title = 'Shepherd · ' + id;
    loadBatch(state.generation, id);
  }

  function currentBatchId() {
    return $('#batch-id').textContent;
  }

  function loadBatch(generation, id) {
    var batchId = id || currentBatchId();
    json(batchPath(batchId)).then(function (body) {
      if (generation !== state.generation) return;
      state.detail = body;
      notice('');
      renderBatch(body);
      markLive();
      schedule(function (g) { loadBatch(g, batchId); }, hasEnded(body.batch) ? ENDED_POLL_MS : RUNNING_POLL_MS, generation);
    }, function (error) {
      if (generation !== state.generation) return;
      if (error instanceof ApiError && error.status === 404) {
        $('#batch-body').hidden = true;
        $('#cancel').hidden = true;
        updateBadge($('#batch-status'), 'missing');
        setText('#batch-status', 'not found');
        notice('No batch ' + batchId + ' is visible with this key.');
        return;
      }
      if (handleFailure(error, generation)) {
        schedule(function (g) { loadBatch(g, batchId); }, RUNNING_POLL_MS * 2, generation);
      }
    });
  }

  function renderBatch(body) {
    var b = body.batch;
    $('#batch-body').hidden = false;
    setText('#batch-id', b.id);
    updateBadge($('#batch-status'), b.status);
    var meta = [b.door + ' door', b.model, b.endpoint].filter(Boolean);
    setText('#batch-meta', meta.join(' · '));
    document.title = 'Shepherd · ' + b.id + ' · ' + percentOf(b).toFixed(0) + '%';
    $('#cancel').hidden = !isActive(b);

    var refusals = body.input_errors || [];
    updateProgress($('#batch-progress'), b);
    setText('#progress-text', refusals.length > 0
      ? 'input refused: nothing was sent'
      : num(b.finished) + ' / ' + num(b.total) + ' finished · ' + percentOf(b).toFixed(1) + '%');
    setText('#progress-eta', eta(b));

    setText('#count-total', num(b.total));
    setText('#count-succeeded', num(b.succeeded));
    setText('#count-failed', num(b.failed));
    $('#count-failed').classList.toggle('nonzero', Number(b.failed) > 0);
    setText('#count-cancelled', num(b.cancelled));
    setText('#count-expired', num(b.expired));
    setText('#tokens-in', num(b.input_tokens));
    setText('#tokens-out', num(b.output_tokens));
    setText('#cost', usd(b.cost_usd));

    setText('#time-created', dateTime(b.created_at));
    setText('#time-started', dateTime(b.in_progress_at));
    setText('#time-ended', dateTime(b.ended_at));
    var start = b.in_progress_at || b.created_at;
    setText('#time-duration', start ? duration((hasEnded(b) ? b.ended_at : nowSeconds()) - start) + (hasEnded(b) ? '' : ' so far') : '—');

    renderLatency(body.latency_ms || {});
    renderErrors(body.errors || [], b);
    renderRefusals(refusals);
    renderMetadata(b.metadata);
    renderLanes(body.lanes || []);
    drawChart();
  }

  function eta(b) {
    if (hasEnded(b)) return b.status === 'completed' ? 'done' : '';
    if (b.status === 'cancelling') return 'cancelling…';
    var started = b.in_progress_at;
    var remaining = Number(b.total) - Number(b.finished);
    if (!started || !(b.finished > 0) || !(remaining > 0)) return '';
    var elapsed = nowSeconds() - started;
    if (elapsed <= 0) return '';
    var rate = b.finished / elapsed;
    return 'about ' + duration(remaining / rate) + ' left at ' + trim(rate) + ' req/s';
  }

  function renderLatency(latency) {
    ['p50', 'p90', 'p99', 'max'].forEach(function (p) {
      setText($('#latency td[data-p="' + p + '"]'), latency.count ? ms(latency[p]) : '—');
    });
    setText('#latency-count', latency.count ? 'over ' + num(latency.count) + ' answers' : '');
  }

  function renderErrors(errors, b) {
    var tbody = $('#errors tbody');
    var total = errors.reduce(function (sum, e) { return sum + (Number(e.count) || 0); }, 0);
    if (errors.length === 0) {
      tbody.replaceChildren(el('tr', null, [el('td', { className: 'empty', colspan: 3, text: Number(b.failed) > 0 ? 'No breakdown available' : 'No errors' })]));
      return;
    }
    tbody.replaceChildren.apply(tbody, errors.map(function (e) {
      var share = total ? (100 * e.count) / total : 0;
      return el('tr', { 'data-kind': e.kind }, [
        el('td', { className: 'mono', text: e.kind }),
        el('td', { className: 'num', text: num(e.count) }),
        el('td', null, [el('div', { className: 'share' }, [
          el('div', { className: 'progress' }, [el('div', { className: 'bar', style: 'width:' + share.toFixed(1) + '%' })]),
          el('span', { className: 'ptext', text: share.toFixed(0) + '%' }),
        ])]),
      ]);
    }));
  }

  // Why the server refused the batch's input, each problem with its line, as shepherd status lists them.
  function renderRefusals(refusals) {
    $('#input-refused').hidden = refusals.length === 0;
    $('#errors').hidden = refusals.length > 0;
    setText('#input-refused-text', 'The server refused this batch\'s input: ' + num(refusals.length) + (refusals.length === 1 ? ' problem' : ' problems') + '.');
    $('#input-errors tbody').replaceChildren.apply($('#input-errors tbody'), refusals.map(function (e) {
      return el('tr', { 'data-code': e.code }, [
        el('td', { className: 'num', text: num(e.line) }),
        el('td', { className: 'mono', text: e.code }),
        el('td', { text: e.message }),
      ]);
    }));
  }

  function renderMetadata(metadata) {
    var keys = metadata && typeof metadata === 'object' ? Object.keys(metadata) : [];
    $('#metadata-card').hidden = keys.length === 0;
    $('#metadata tbody').replaceChildren.apply($('#metadata tbody'), keys.map(function (k) {
      var v = metadata[k];
      return el('tr', null, [el('th', { text: k }), el('td', { text: typeof v === 'string' ? v : JSON.stringify(v) })]);
    }));
  }

  function renderLanes(lanes) {
    var tbody = $('#lanes tbody');
    if (lanes.length === 0) {
      tbody.replaceChildren(el('tr', null, [el('td', { className: 'empty', colspan: 7, text: 'No lane has carried this batch yet' })]));
      return;
    }
    tbody.replaceChildren.apply(tbody, lanes.map(function (lane) {
      var paused = lane.paused_until !== null && lane.paused_until !== undefined && lane.paused_until > nowSeconds();
      return el('tr', null, [
        el('td', { className: 'mono', text: lane.upstream, title: lane.upstream }),
        el('td', { text: lane.model }),
        el('td', { className: 'num', text: lane.requests_per_minute === null || lane.requests_per_minute === undefined ? 'none' : num(Math.round(lane.requests_per_minute)) }),
        el('td', { className: 'num', text: lane.tokens_per_minute === null || lane.tokens_per_minute === undefined ? 'none' : num(Math.round(lane.tokens_per_minute)) }),
        el('td', { className: 'num', text: num(lane.concurrency_limit) }),
        el('td', { className: 'num', text: num(lane.in_flight) }),
        el('td', laneState(lane, paused)),
      ]);
    }));
  }

  // What a lane is doing: sending, paused by a retry-after, or stopped (its upstream down,
  // its key refused) since when, why, and when it probes next.
  function laneState(lane, paused) {
    if (lane.state === 'down' || lane.state === 'key_refused') {
      var what = lane.state === 'down' ? 'down' : 'key refused';
      var probe = lane.next_probe_at > nowSeconds() ? ' · next probe in ' + duration(lane.next_probe_at - nowSeconds()) : ' · probing';
      return { className: 'stopped', text: what + ' since ' + clock(lane.since) + (lane.reason ? ': ' + lane.reason : '') + probe, title: lane.reason || what };
    }
    if (paused) {
      return { className: 'paused', text: 'paused until ' + clock(lane.paused_until) + ' (in ' + duration(lane.paused_until - nowSeconds()) + ')' };
    }
    return { className: 'muted', text: 'sending' };
  }

  // ---------- throughput chart ----------

  var chart = { points: [], layout: null, hover: null };
  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  function chartSeries(body) {
    var bucket = Math.max(1, Number(body.bucket_seconds) || 1);
    var timeline = (body.timeline || []).slice().sort(function (a, b) { return a.t - b.t; });
    if (timeline.length === 0) return { bucket: bucket, points: [] };
    var byTime = {};
    timeline.forEach(function (p) { byTime[p.t] = p; });
    var first = timeline[0].t;
    var last = timeline[timeline.length - 1].t;
    // A bucket with no activity is absent from the timeline: it is a zero, not a gap to draw across.
    var count = Math.min(2000, Math.round((last - first) / bucket) + 1);
    var points = [];
    for (var i = 0; i < count; i++) {
      var t = first + i * bucket;
      var p = byTime[t] || { t: t, requests: 0, tokens: 0, failed: 0 };
      points.push({ t: t, rps: (p.requests || 0) / bucket, tps: (p.tokens || 0) / bucket, fps: (p.failed || 0) / bucket, requests: p.requests || 0, tokens: p.tokens || 0, failed: p.failed || 0 });
    }
    // While the batch runs the newest bucket is still filling: drawn as a rate it would always dip.
    if (!hasEnded(body.batch) && points.length > 1) points.pop();
    return { bucket: bucket, points: points };
  }

  function niceStep(value) {
    if (!(value > 0)) return 1;
    var exponent = Math.pow(10, Math.floor(Math.log10(value)));
    var fraction = value / exponent;
    var nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
    return nice * exponent;
  }

  // Round gridlines for the left axis; the right axis shares them with its own round step.
  function axes(maxLeft, maxRight) {
    var step = niceStep(maxLeft / 4);
    var ticks = Math.max(1, Math.ceil(maxLeft / step - 1e-9));
    if (!(maxLeft > 0)) { step = 1; ticks = 4; }
    var rightStep = niceStep(maxRight / ticks);
    return { ticks: ticks, left: step * ticks, right: (maxRight > 0 ? rightStep : 1) * ticks };
  }

  function drawChart() {
    var canvas = $('#throughput');
    if (!state.detail || canvas.offsetParent === null) return;
    var series = chartSeries(state.detail);
    chart.points = series.points;
    var dpr = window.devicePixelRatio || 1;
    var width = canvas.clientWidth;
    var height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

    var points = series.points;
    if (points.length === 0) {
      ctx.fillStyle = '#667085';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('No request has finished yet', width / 2, height / 2);
      chart.layout = null;
      return;
    }

    var pad = { left: 46, right: 54, top: 10, bottom: 24 };
    var plotW = Math.max(10, width - pad.left - pad.right);
    var plotH = Math.max(10, height - pad.top - pad.bottom);
    var t0 = points[0].t;
    var t1 = points[points.length - 1].t + series.bucket;
    var span = Math.max(series.bucket, t1 - t0);
    var scale = axes(Math.max.apply(null, points.map(function (p) { return Math.max(p.rps, p.fps); })),
      Math.max.apply(null, points.map(function (p) { return p.tps; })));
    var maxR = scale.left;
    var maxT = scale.right;
    var x = function (t) { return pad.left + ((t - t0) / span) * plotW; };
    var yR = function (v) { return pad.top + plotH - (v / maxR) * plotH; };
    var yT = function (v) { return pad.top + plotH - (v / maxT) * plotH; };
    chart.layout = { pad: pad, plotW: plotW, plotH: plotH, x: x, bucket: series.bucket, width: width };

    // Grid and axes
    ctx.strokeStyle = '#eceff3';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    for (var i = 0; i <= scale.ticks; i++) {
      var gy = Math.round(pad.top + (plotH * i) / scale.ticks) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, gy);
      ctx.lineTo(pad.left + plotW, gy);
      ctx.stroke();
      ctx.fillStyle = '#2563eb';
      ctx.textAlign = 'right';
      ctx.fillText(compact(maxR * (1 - i / scale.ticks)), pad.left - 6, gy);
      ctx.fillStyle = '#c2620c';
      ctx.textAlign = 'left';
      ctx.fillText(compact(maxT * (1 - i / scale.ticks)), pad.left + plotW + 6, gy);
    }
    ctx.fillStyle = '#667085';
    ctx.textBaseline = 'top';
    // Time ticks on round steps (whole seconds, minutes, hours) so no two labels read the same.
    var maxTicks = Math.max(2, Math.floor(plotW / 90));
    var step = TIME_STEPS.filter(function (candidate) { return span / candidate <= maxTicks; })[0] || TIME_STEPS[TIME_STEPS.length - 1];
    for (var tt = Math.ceil(t0 / step) * step; tt <= t1 + 1e-6; tt += step) {
      var tx = x(tt);
      var label = step >= 86400 ? dateTime(tt).slice(5, 10) : step >= 60 ? clock(tt).slice(0, 5) : clock(tt);
      ctx.textAlign = tx - pad.left < 24 ? 'left' : pad.left + plotW - tx < 24 ? 'right' : 'center';
      ctx.fillText(label, tx, pad.top + plotH + 7);
      ctx.fillRect(Math.round(tx), pad.top + plotH, 1, 4);
    }

    var center = function (p) { return x(p.t + series.bucket / 2); };
    var barW = Math.max(2, Math.min(14, (plotW / points.length) * 0.6));

    // Failed per second: bars on the requests axis
    ctx.fillStyle = 'rgba(220, 38, 38, 0.75)';
    points.forEach(function (p) {
      if (p.fps > 0) ctx.fillRect(center(p) - barW / 2, yR(p.fps), barW, pad.top + plotH - yR(p.fps));
    });

    function line(yOf, value, color, fill) {
      ctx.beginPath();
      points.forEach(function (p, index) {
        var px = center(p);
        var py = yOf(value(p));
        if (index === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      if (fill) {
        ctx.save();
        ctx.lineTo(center(points[points.length - 1]), pad.top + plotH);
        ctx.lineTo(center(points[0]), pad.top + plotH);
        ctx.closePath();
        ctx.fillStyle = fill;
        ctx.fill();
        ctx.restore();
        ctx.beginPath();
        points.forEach(function (p, index) {
          var px = center(p);
          var py = yOf(value(p));
          if (index === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        });
      }
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.stroke();
      if (points.length === 1) {
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.arc(center(points[0]), yOf(value(points[0])), 3, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    line(yT, function (p) { return p.tps; }, '#ea7a12', null);
    line(yR, function (p) { return p.rps; }, '#2563eb', 'rgba(37, 99, 235, 0.10)');

    // Hover guide
    if (chart.hover !== null && chart.points[chart.hover]) {
      var hp = chart.points[chart.hover];
      var hx = Math.round(center(hp)) + 0.5;
      ctx.strokeStyle = 'rgba(29, 35, 48, 0.35)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(hx, pad.top);
      ctx.lineTo(hx, pad.top + plotH);
      ctx.stroke();
      [[yR(hp.rps), '#2563eb'], [yT(hp.tps), '#ea7a12']].forEach(function (dot) {
        ctx.fillStyle = '#fff';
        ctx.strokeStyle = dot[1];
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(hx, dot[0], 3.5, 0, Math.PI * 2);
        ctx.fill();
        ctx.stroke();
      });
    }
  }

  function chartHover(event) {
    var layout = chart.layout;
    var tip = $('#chart-tip');
    if (!layout || chart.points.length === 0) { tip.hidden = true; return; }
    var rect = event.currentTarget.getBoundingClientRect();
    var mx = event.clientX - rect.left;
    var best = 0;
    var bestDistance = Infinity;
    chart.points.forEach(function (p, index) {
      var d = Math.abs(layout.x(p.t + layout.bucket / 2) - mx);
      if (d < bestDistance) { bestDistance = d; best = index; }
    });
    chart.hover = best;
    var p = chart.points[best];
    tip.replaceChildren(
      el('div', { text: clock(p.t) + ' – ' + clock(p.t + layout.bucket) }),
      el('div', { text: trim(p.rps) + ' requests/s (' + num(p.requests) + ')' }),
      el('div', { text: compact(p.tps) + ' tokens/s (' + num(p.tokens) + ')' }),
      el('div', { text: trim(p.fps) + ' failed/s (' + num(p.failed) + ')' })
    );
    tip.hidden = false;
    var px = layout.x(p.t + layout.bucket / 2);
    var left = px + 12;
    if (left + tip.offsetWidth > layout.width) left = px - 12 - tip.offsetWidth;
    tip.style.left = Math.max(0, left) + 'px';
    drawChart();
  }

  function chartLeave() {
    chart.hover = null;
    $('#chart-tip').hidden = true;
    drawChart();
  }

  // ---------- actions ----------

  function cancelBatch() {
    var id = currentBatchId();
    if (!window.confirm('Cancel batch ' + id + '?\n\nRequests not yet sent will not be sent; answers already received are kept.')) return;
    var button = $('#cancel');
    button.disabled = true;
    var generation = state.generation;
    api(batchPath(id) + '/cancel', { method: 'POST' }).then(function () {
      notice('');
    }, function (error) {
      if (error instanceof AuthError) { handleFailure(error, generation); return; }
      notice(error instanceof ApiError && error.status === 409
        ? 'The batch had already ended: ' + error.message
        : 'Cancel failed: ' + (error.message || 'the server could not be reached'));
    }).then(function () {
      button.disabled = false;
      if (generation === state.generation) {
        clearTimeout(state.timer);
        loadBatch(generation, id);
      }
    });
  }

  function download(kind, button) {
    var id = currentBatchId();
    var original = button.textContent;
    button.disabled = true;
    setText(button, 'Downloading…');
    api(batchPath(id) + '/download?kind=' + kind).then(function (response) {
      return response.blob();
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var link = el('a', { href: url, download: id + '.' + kind + '.jsonl' });
      link.hidden = true;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }).catch(function (error) {
      if (error instanceof AuthError) { handleFailure(error, state.generation); return; }
      notice('Download failed: ' + (error.message || 'the server could not be reached'));
    }).then(function () {
      button.disabled = false;
      setText(button, original);
    });
  }

  // ---------- wiring ----------

  function start() {
    $('#key-form').addEventListener('submit', function (event) {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, $('#key-input').value.trim());
      $('#key-input').value = '';
      route();
    });
    $('#key-forget').addEventListener('click', function (event) {
      event.preventDefault();
      showKeyForm(null);
    });
    $('#filter').addEventListener('input', renderList);
    $('#cancel').addEventListener('click', cancelBatch);
    $('#download-results').addEventListener('click', function () { download('results', this); });
    $('#download-errors').addEventListener('click', function () { download('errors', this); });
    var canvas = $('#throughput');
    canvas.addEventListener('mousemove', chartHover);
    canvas.addEventListener('mouseleave', chartLeave);
    var resizeTimer = 0;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(drawChart, 100);
    });
    window.addEventListener('hashchange', route);
    route();
  }

  start();
}());
