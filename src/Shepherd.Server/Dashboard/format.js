// Shepherd dashboard: the small formatting and DOM helpers the other scripts share through window.Shepherd.
// Plain JavaScript, no build step, no libraries; loaded first, before chart.js, views.js and app.js.
// Every string from the server reaches the page through textContent or attributes, never innerHTML.
(function () {
  'use strict';

  var ACTIVE_STATUSES = ['validating', 'in_progress'];

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

  window.Shepherd = {
    $: $,
    el: el,
    setText: setText,
    num: num,
    compact: compact,
    trim: trim,
    usd: usd,
    ms: ms,
    nowSeconds: nowSeconds,
    age: age,
    duration: duration,
    clock: clock,
    dateTime: dateTime,
    statusLabel: statusLabel,
    isActive: isActive,
    hasEnded: hasEnded,
    percentOf: percentOf,
    updateBadge: updateBadge,
    updateProgress: updateProgress,
  };
}());
