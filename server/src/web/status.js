// sixpath-server status page: polls stats once a second; the chart keeps
// the last five minutes of relayed throughput.
'use strict';
(() => {
  const SPAN = 300;
  const pts = [];
  let prev = null;
  const $ = (id) => document.getElementById(id);
  const rate = (b) => {
    const u = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
    let i = 0;
    while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
    return b.toFixed(i ? 1 : 0) + ' ' + u[i];
  };
  function flat(prefix, v, out) {
    if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v)) flat(prefix ? prefix + '.' + k : k, v[k], out);
    } else {
      out.push([prefix, v]);
    }
    return out;
  }
  function draw() {
    const c = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 80, R = 10, T = 10, B = 10;
    const now = performance.now() / 1000;
    const max = Math.max(1000, ...pts.map((p) => p[1])) * 1.1;
    g.fillStyle = '#777'; g.strokeStyle = '#e4e4e4'; g.font = '11px system-ui, sans-serif';
    for (let k = 0; k <= 4; k++) {
      const y = T + (h - T - B) * (1 - k / 4);
      g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke();
      g.fillText(rate(max * k / 4), 4, y + 4);
    }
    g.strokeStyle = '#1f77b4'; g.lineWidth = 2; g.beginPath();
    pts.forEach(([t, v], i) => {
      const x = w - R - (w - L - R) * ((now - t) / SPAN);
      const y = T + (h - T - B) * (1 - v / max);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
  async function poll() {
    try {
      const r = await fetch('stats', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const s = await r.json();
      const t = performance.now() / 1000;
      const total = s.bytes.client_to_target + s.bytes.target_to_client;
      if (prev) pts.push([t, Math.max(0, (total - prev[1]) * 8 / (t - prev[0]))]);
      while (pts.length && pts[0][0] < t - SPAN) pts.shift();
      prev = [t, total];
      const tb = $('counters').tBodies[0];
      tb.textContent = '';
      for (const [k, v] of flat('', s, [])) {
        const tr = document.createElement('tr');
        const a = document.createElement('td'); a.textContent = k;
        const b = document.createElement('td'); b.textContent = v; b.className = 'num';
        tr.append(a, b); tb.appendChild(tr);
      }
      $('uptime').textContent = 'up ' + s.uptime_seconds + ' s';
      $('state').textContent = 'live';
    } catch (e) {
      $('state').textContent = 'no answer: ' + e.message;
    }
    draw();
    setTimeout(poll, 1000);
  }
  poll();
})();
