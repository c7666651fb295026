// Shepherd dashboard: the throughput chart on a batch's page, drawn on a canvas by hand.
// Plain JavaScript, no build step, no libraries; needs format.js, loaded before it.
// Every string from the server reaches the page through textContent or attributes, never innerHTML.
(function () {
  'use strict';

  // The helpers of format.js, by their short names.
  var S = window.Shepherd, $ = S.$, el = S.el, num = S.num, compact = S.compact, trim = S.trim,
    clock = S.clock, dateTime = S.dateTime, hasEnded = S.hasEnded;

  // ---------- throughput chart ----------

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

  // The chart of the batch detail() returns (null while none is loaded): draw it, and follow the pointer over it.
  S.throughputChart = function (detail) {
    var chart = { points: [], layout: null, hover: null };

    function drawChart() {
      var canvas = $('#throughput');
      var body = detail();
      if (!body || canvas.offsetParent === null) return;
      var series = chartSeries(body);
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

    return { draw: drawChart, hover: chartHover, leave: chartLeave };
  };
}());
