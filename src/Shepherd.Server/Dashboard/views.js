// Shepherd dashboard: the list of batches and a batch's page, rendered from what the server answered.
// Plain JavaScript, no build step, no libraries; needs format.js, loaded before it.
// Every string from the server reaches the page through textContent or attributes, never innerHTML.
(function () {
  'use strict';

  // The helpers of format.js, by their short names.
  var S = window.Shepherd, $ = S.$, el = S.el, setText = S.setText, num = S.num, trim = S.trim,
    usd = S.usd, ms = S.ms, nowSeconds = S.nowSeconds, age = S.age, duration = S.duration,
    clock = S.clock, dateTime = S.dateTime, statusLabel = S.statusLabel, isActive = S.isActive,
    hasEnded = S.hasEnded, percentOf = S.percentOf, updateBadge = S.updateBadge,
    updateProgress = S.updateProgress;

  // ---------- list view ----------

  function matchesFilter(batch, filter) {
    if (!filter) return true;
    var haystack = [batch.id, batch.door, batch.status, statusLabel(batch.status), batch.model, batch.endpoint]
      .concat(batch.metadata ? Object.keys(batch.metadata).map(function (k) { return k + ' ' + batch.metadata[k]; }) : [])
      .join(' ').toLowerCase();
    return filter.split(/\s+/).every(function (word) { return haystack.indexOf(word) >= 0; });
  }

  function renderList(batches) {
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
    setText('#saved', usd(b.saved_usd));
    // Answers from the answer cache: not sent, not paid again; what they cost when bought is what the cache saved.
    setText('#count-cached', num(b.cached));
    setText('#cache-saved', usd(b.cache_saved_usd));
    setText('#tiers', tiersText(b.tiers));
    setText('#output-checks', checksText(b.output_checks));

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
  }

  // How the answers checked against their schema came out: "480 checked · 95.0% valid at the first try · 99.6% after asking again (26 asked again, $0.0031) · 2 invalid"; empty when none was checked.
  function checksText(checks) {
    if (!checks || !(Number(checks.checked) > 0)) return '';
    var share = function (x) { return (Number(x) * 100).toFixed(1) + '%'; };
    var parts = [num(checks.checked) + ' answers checked against their schema',
      share(checks.valid_first_share) + ' valid at the first try',
      share(checks.valid_share) + ' after asking again (' + num(checks.reasked) + ' asked again, ' + usd(checks.reask_cost_usd) + ')'];
    if (Number(checks.invalid) > 0) parts.push(num(checks.invalid) + ' invalid_output');
    return parts.join(' · ');
  }

  // Which way the answers came: "9,000 native ($1.20) · 1,000 realtime ($0.30)"; empty when all came in realtime.
  function tiersText(tiers) {
    if (!tiers || !(Number(tiers.native && tiers.native.requests) > 0 || Number(tiers.flex && tiers.flex.requests) > 0)) return '';
    return ['native', 'flex', 'realtime']
      .filter(function (name) { return tiers[name] && Number(tiers[name].requests) > 0; })
      .map(function (name) { return num(tiers[name].requests) + ' ' + name + ' (' + usd(tiers[name].cost_usd) + ')'; })
      .join(' · ');
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

  S.renderList = renderList;
  S.renderBatch = renderBatch;
}());
