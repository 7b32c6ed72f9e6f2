// The vperfetto timeline viewer. vperfetto/timeline/html.py inlines this file
// into each self-contained page, with two JSON documents: #vp-data (title,
// span, legend, slice names, one entry per track: label, side, hue) and
// #vp-row-data (per track: its slices [start, duration, name index, depth]
// and counter points [time, value], times in ns from the first event).
(function(){
"use strict";
var D = JSON.parse(document.getElementById('vp-data').textContent);
var R = JSON.parse(document.getElementById('vp-row-data').textContent);
D.tracks.forEach(function(t, i){ t.slices = R[i][0]; t.counter = R[i][1]; });
var LANE = 13, MAX_LANES = 12, COUNTER_H = 28, LABEL_W = 250;
document.documentElement.style.setProperty('--label-w', LABEL_W + 'px');
var view = {t0: 0, t1: D.span};
var rowsEl = document.getElementById('vp-rows');
var tip = document.getElementById('vp-tooltip');
var axis = document.getElementById('vp-axis');
document.getElementById('vp-title').textContent = D.title;
document.title = D.title + ' \u2014 vperfetto timeline';
var info = 't = 0 ms at ' + D.clock + ' ' + D.start + '; span ' + fmtDur(D.span) + '; ' +
  D.tracks.length + ' tracks';
if (D.slices_total > D.slices_kept)
  info += '; ' + D.slices_kept + ' of ' + D.slices_total + ' slices shown (the longest)';
document.getElementById('vp-info').textContent = info;
var leg = document.getElementById('vp-legend');
D.legend.forEach(function(l){
  var s = document.createElement('span'); s.className = 'vp-legend'; s.setAttribute('data-side', l[2]);
  var sw = document.createElement('span'); sw.className = 'vp-swatch';
  sw.style.background = 'hsl(' + l[1] + ',60%,50%)';
  var tx = document.createElement('span'); tx.textContent = l[0];
  s.appendChild(sw); s.appendChild(tx); leg.appendChild(s);
});

function fmtDur(ns){
  if (ns >= 1e9) return (ns/1e9).toFixed(3) + ' s';
  if (ns >= 1e6) return (ns/1e6).toFixed(3) + ' ms';
  if (ns >= 1e3) return (ns/1e3).toFixed(1) + ' us';
  return Math.round(ns) + ' ns';
}
function nameHash(s){
  var h = 2166136261, b = new TextEncoder().encode(s);
  for (var i = 0; i < b.length; i++) { h ^= b[i]; h = Math.imul(h, 16777619) >>> 0; }
  return h;
}
var colourCache = {};
function sliceColour(hue, name){
  var k = hue + '|' + name, c = colourCache[k];
  if (c) return c;
  var h = nameHash(name);
  c = 'hsl(' + (hue + (h % 21) - 10) + ',' + (55 + (h >>> 8) % 25) + '%,' + (42 + (h >>> 16) % 18) + '%)';
  return colourCache[k] = c;
}

var rows = [], prevGroup = null;
D.tracks.forEach(function(t, i){
  var el = document.createElement('div');
  el.className = 'vp-row';
  el.setAttribute('data-track', t.uuid);
  el.setAttribute('data-kind', t.kind);
  el.setAttribute('data-side', t.guest ? 'guest' : 'host');
  if (t.guest) el.setAttribute('data-guest', t.guest_name);
  var group = (t.guest ? t.guest_name : '') + '|' + t.pid;
  if (prevGroup !== null && group !== prevGroup) el.className += ' vp-first';
  prevGroup = group;
  var lanes = 1;
  t.slices.forEach(function(s){ if (s[3] + 1 > lanes) lanes = s[3] + 1; });
  var isCounter = t.counter.length > 0 && t.slices.length === 0;
  var h = isCounter ? COUNTER_H : 6 + LANE * Math.min(lanes, MAX_LANES);
  var bg = 'hsl(' + t.hue + ',60%,' + (t.kind === 'process' ? 90 : 95) + '%)';
  el.style.background = bg;
  var lab = document.createElement('div');
  lab.className = 'vp-label'; lab.textContent = t.label; lab.title = t.label;
  lab.style.borderLeftColor = 'hsl(' + t.hue + ',65%,45%)';
  lab.style.height = h + 'px';
  var cv = document.createElement('canvas');
  cv.className = 'vp-canvas'; cv.style.height = h + 'px';
  el.appendChild(lab); el.appendChild(cv);
  rowsEl.appendChild(el);
  // slices by lane, sorted by start, for hover lookups
  var byLane = [];
  t.slices.forEach(function(s){
    var l = Math.min(s[3], MAX_LANES - 1);
    (byLane[l] = byLane[l] || []).push(s);
  });
  var lo = Infinity, hi = -Infinity;
  t.counter.forEach(function(p){ if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; });
  rows.push({t: t, el: el, cv: cv, h: h, byLane: byLane, isCounter: isCounter, lo: lo, hi: hi});
});

function plotW(){ return rows.length ? rows[0].cv.clientWidth : axis.clientWidth; }
function tx(t, w){ return (t - view.t0) * w / (view.t1 - view.t0); }

function setupCanvas(cv, h){
  var dpr = window.devicePixelRatio || 1, w = cv.clientWidth;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
    cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  }
  var g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return g;
}

function niceStep(span, target){
  var raw = span / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
  var ms = [1, 2, 5, 10];
  for (var i = 0; i < ms.length; i++) if (ms[i] * p >= raw) return ms[i] * p;
  return 10 * p;
}

function drawAxis(){
  var w = axis.clientWidth, g = setupCanvas(axis, 22);
  var spanMs = (view.t1 - view.t0) / 1e6, step = niceStep(spanMs, Math.max(2, w / 110));
  var first = Math.ceil(view.t0 / 1e6 / step) * step;
  var dec = step < 1 ? Math.min(9, -Math.floor(Math.log10(step))) : 0;
  g.fillStyle = '#333'; g.font = '10px sans-serif'; g.textAlign = 'center';
  for (var v = first; v <= view.t1 / 1e6 + 1e-12; v += step) {
    var x = tx(v * 1e6, w);
    g.fillRect(Math.round(x), 14, 1, 8);
    var label = v.toFixed(dec), lw = g.measureText(label).width;
    g.fillText(label, Math.max(lw / 2 + 1, Math.min(w - lw / 2 - 1, x)), 11);
  }
}

function drawRow(r){
  var w = r.cv.clientWidth, g = setupCanvas(r.cv, r.h), t = r.t;
  var spanMs = (view.t1 - view.t0) / 1e6, step = niceStep(spanMs, Math.max(2, w / 110));
  g.fillStyle = 'rgba(0,0,0,0.07)';
  for (var v = Math.ceil(view.t0 / 1e6 / step) * step; v <= view.t1 / 1e6; v += step)
    g.fillRect(Math.round(tx(v * 1e6, w)), 0, 1, r.h);
  if (r.isCounter) {
    var rng = (r.hi - r.lo) || 1, pts = t.counter, lastY = null;
    g.strokeStyle = 'hsl(' + t.hue + ',70%,35%)'; g.lineWidth = 1.2; g.beginPath();
    for (var i = 0; i < pts.length; i++) {
      var x = tx(pts[i][0], w), y = r.h - 3 - (pts[i][1] - r.lo) * (r.h - 8) / rng;
      if (lastY === null) g.moveTo(x, y); else { g.lineTo(x, lastY); g.lineTo(x, y); }
      lastY = y;
    }
    if (lastY !== null) g.lineTo(w, lastY);
    g.stroke();
    g.fillStyle = '#333'; g.font = '9px sans-serif'; g.textAlign = 'right';
    g.fillText(fmtNum(r.hi), w - 2, 10); g.fillText(fmtNum(r.lo), w - 2, r.h - 2);
    return;
  }
  g.font = '9px sans-serif'; g.textAlign = 'left'; g.textBaseline = 'alphabetic';
  r.byLane.forEach(function(list, lane){
    if (!list) return;
    var lastEnd = -1, y = 3 + lane * LANE;
    for (var i = 0; i < list.length; i++) {
      var s = list[i], x = tx(s[0], w), sw = s[1] * w / (view.t1 - view.t0);
      if (x > w || x + Math.max(sw, 1) < 0) continue;
      if (sw < 1 && lastEnd >= x) continue;
      var name = D.names[s[2]];
      g.fillStyle = sliceColour(t.hue, name);
      var ww = Math.max(sw, 1);
      g.fillRect(x, y, ww, LANE - 2);
      lastEnd = x + ww;
      if (sw >= 30) {
        var x0 = Math.max(x, 0) + 3, avail = Math.min(x + sw, w) - x0 - 3;
        if (avail > 8) {
          g.save(); g.beginPath(); g.rect(x0, y, avail, LANE - 2); g.clip();
          g.fillStyle = '#fff'; g.fillText(name, x0, y + LANE - 4); g.restore();
        }
      }
    }
  });
}
function fmtNum(v){ return (Math.abs(v) >= 1e4 || Number.isInteger(v)) ? String(Math.round(v * 1e4) / 1e4) : v.toPrecision(4); }

var pending = false;
function redraw(){
  pending = false;
  drawAxis();
  rows.forEach(drawRow);
}
function schedule(){ if (!pending) { pending = true; requestAnimationFrame(redraw); } }

function clampView(){
  var minSpan = 1000, span = Math.max(minSpan, view.t1 - view.t0);
  if (span > D.span * 1.0) span = D.span;
  if (view.t0 < 0) view.t0 = 0;
  if (view.t0 + span > D.span) view.t0 = D.span - span;
  view.t1 = view.t0 + span;
}
function zoomAt(frac, factor){
  var span = view.t1 - view.t0, at = view.t0 + frac * span, ns = span * factor;
  view.t0 = at - frac * ns; view.t1 = view.t0 + ns; clampView(); schedule(); hideTip();
}
function pan(frac){
  var span = view.t1 - view.t0; view.t0 += frac * span; view.t1 += frac * span; clampView(); schedule();
}
document.getElementById('vp-zoom-in').onclick = function(){ zoomAt(0.5, 0.5); };
document.getElementById('vp-zoom-out').onclick = function(){ zoomAt(0.5, 2); };
document.getElementById('vp-reset').onclick = function(){ view.t0 = 0; view.t1 = D.span; schedule(); };
document.getElementById('vp-left').onclick = function(){ pan(-0.25); };
document.getElementById('vp-right').onclick = function(){ pan(0.25); };

rowsEl.addEventListener('wheel', function(e){
  var cv = e.target.closest ? e.target.closest('.vp-canvas') : null;
  if (!cv) return;
  e.preventDefault();
  var rect = cv.getBoundingClientRect(), frac = (e.clientX - rect.left) / rect.width;
  if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) pan((e.deltaX || e.deltaY) / 500);
  else zoomAt(frac, Math.pow(1.0015, e.deltaY));
}, {passive: false});

var drag = null;
rowsEl.addEventListener('mousedown', function(e){
  if (!e.target.classList.contains('vp-canvas')) return;
  drag = {x: e.clientX, t0: view.t0, t1: view.t1, w: e.target.clientWidth};
  e.preventDefault();
});
window.addEventListener('mouseup', function(){ drag = null; });
window.addEventListener('mousemove', function(e){
  if (!drag) return;
  var dt = (e.clientX - drag.x) * (drag.t1 - drag.t0) / drag.w;
  view.t0 = drag.t0 - dt; view.t1 = drag.t1 - dt; clampView(); schedule(); hideTip();
});
window.addEventListener('keydown', function(e){
  var k = e.key.toLowerCase();
  if (k === 'w') zoomAt(0.5, 0.8); else if (k === 's') zoomAt(0.5, 1.25);
  else if (k === 'a') pan(-0.1); else if (k === 'd') pan(0.1);
});
window.addEventListener('resize', schedule);

function hideTip(){ tip.hidden = true; tip.textContent = ''; }
function hitTest(r, x, y){
  var w = r.cv.clientWidth, span = view.t1 - view.t0;
  var t = view.t0 + x * span / w, tol = 2 * span / w;
  if (r.isCounter) {
    var pts = r.t.counter, best = null;
    for (var i = 0; i < pts.length && pts[i][0] <= t; i++) best = pts[i];
    return best ? {counter: best} : null;
  }
  var lane = Math.floor((y - 3) / LANE);
  var list = r.byLane[Math.max(0, Math.min(lane, MAX_LANES - 1))];
  if (!list || lane < 0) return null;
  var lo = 0, hi = list.length;            // first slice starting after t + tol
  while (lo < hi) { var m = (lo + hi) >> 1; if (list[m][0] <= t + tol) lo = m + 1; else hi = m; }
  var found = null;
  for (var j = lo - 1; j >= 0 && j >= lo - 4096; j--) {
    var s = list[j];
    if (s[0] + s[1] + tol >= t) { found = s; break; }
  }
  return found ? {slice: found} : null;
}
function showTip(r, hit, cx, cy){
  var lines;
  if (hit.slice) {
    var s = hit.slice;
    lines = [D.names[s[2]], 'track: ' + r.t.label + '  (' + r.t.side + ')',
             'duration: ' + fmtDur(s[1]), 'start: ' + (s[0] / 1e6).toFixed(6) + ' ms'];
  } else {
    var p = hit.counter;
    lines = [r.t.name + ' = ' + fmtNum(p[1]), 'track: ' + r.t.label, 'at: ' + (p[0] / 1e6).toFixed(6) + ' ms'];
  }
  tip.textContent = lines.join('\n');
  tip.hidden = false;
  var x = cx + 14, y = cy + 14;
  if (x + tip.offsetWidth > window.innerWidth) x = cx - tip.offsetWidth - 8;
  if (y + tip.offsetHeight > window.innerHeight) y = cy - tip.offsetHeight - 8;
  tip.style.left = x + 'px'; tip.style.top = y + 'px';
}
rowsEl.addEventListener('mousemove', function(e){
  if (drag) return;
  var cv = e.target.closest ? e.target.closest('.vp-canvas') : null;
  var idx = -1;
  if (cv) for (var i = 0; i < rows.length; i++) if (rows[i].cv === cv) { idx = i; break; }
  if (idx < 0) { hideTip(); return; }
  var rect = cv.getBoundingClientRect();
  var hit = hitTest(rows[idx], e.clientX - rect.left, e.clientY - rect.top);
  if (hit) showTip(rows[idx], hit, e.clientX, e.clientY); else hideTip();
});
rowsEl.addEventListener('mouseleave', hideTip);

// For tools and tests: where a slice is on screen, and the current view.
window.vperfetto = {
  view: function(){ return {t0: view.t0, t1: view.t1}; },
  slicePoint: function(name){
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], w = r.cv.clientWidth, rect = r.cv.getBoundingClientRect();
      for (var l = 0; l < r.byLane.length; l++) {
        var list = r.byLane[l] || [];
        for (var j = 0; j < list.length; j++) {
          var s = list[j];
          if (D.names[s[2]] !== name) continue;
          var x0 = Math.max(0, tx(s[0], w)), x1 = Math.min(w, tx(s[0] + s[1], w));
          if (x1 - x0 < 2) continue;
          return {x: rect.left + (x0 + x1) / 2, y: rect.top + 3 + l * LANE + (LANE - 2) / 2,
                  track: r.t.uuid};
        }
      }
    }
    return null;
  },
  ready: true
};
if (!rows.length) {
  var none = document.createElement('div');
  none.id = 'vp-empty'; none.textContent = 'nothing to draw in this trace';
  rowsEl.appendChild(none);
}
redraw();
document.body.setAttribute('data-ready', '1');
})();
