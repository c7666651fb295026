// Shepherd dashboard: the app (its state, the calls to the server, the views and actions, the wiring).
// Plain JavaScript, no build step, no libraries; loaded last, after format.js, chart.js and views.js.
// Every string from the server reaches the page through textContent or attributes, never innerHTML.
(function () {
  'use strict';

  // The helpers of format.js, by their short names.
  var S = window.Shepherd, $ = S.$, el = S.el, setText = S.setText, nowSeconds = S.nowSeconds,
    clock = S.clock, hasEnded = S.hasEnded, updateBadge = S.updateBadge;

  var KEY_STORAGE = 'shepherd.key';
  var LIST_POLL_MS = 2000;
  var RUNNING_POLL_MS = 1000;
  var ENDED_POLL_MS = 5000;

  var state = {
    key: null,          // null: none chosen yet; '' is a valid (empty) key
    generation: 0,      // bumped on every navigation so stale polls stop
    timer: 0,
    batches: [],
    detail: null,
  };

  var throughput = S.throughputChart(function () { return state.detail; });

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

  // views.js renders; the filter box re-renders the batches already fetched.
  function renderList() {
    S.renderList(state.batches);
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
    S.renderBatch(body);
    throughput.draw();
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
    canvas.addEventListener('mousemove', throughput.hover);
    canvas.addEventListener('mouseleave', throughput.leave);
    var resizeTimer = 0;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(throughput.draw, 100);
    });
    window.addEventListener('hashchange', route);
    route();
  }

  start();
}());
