// sixpath-client status page: polls api/status once a second and keeps
// the last five minutes of throughput per interface for the chart (its
// span grows with the history, by minutes).
'use strict';
(() => {
  const token = document.querySelector('meta[name="sixpath-token"]').content;
  const SPAN = 300; // seconds shown
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
  const series = new Map(); // interface -> [[seconds, bits/s]]
  const prev = []; // the last polls' {t, totals: Map}, oldest first
  let latest = null;
  const $ = (id) => document.getElementById(id);

  const bytes = (n) => {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  };
  const rate = (b) => {
    const u = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
    let i = 0;
    while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
    return b.toFixed(i ? 1 : 0) + ' ' + u[i];
  };
  const ms = (us) => (us ? (us / 1000).toFixed(1) + ' ms' : '–');
  const age = (m) => (m < 60000 ? Math.round(m / 1000) + ' s' : Math.round(m / 60000) + ' min');
  const cell = (tr, text, cls) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  };
  const color = (name) => {
    const names = [...series.keys()];
    return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length];
  };

  function record(s) {
    const t = performance.now() / 1000;
    const names = s.paths.length ? s.paths.map((p) => p.interface) : Object.keys(s.interfaces);
    const totals = new Map(names.map((n) => {
      const i = s.interfaces[n] || { bytes_sent: 0, bytes_received: 0 };
      return [n, i.bytes_sent + i.bytes_received];
    }));
    // Rates over about three seconds: the client samples each
    // connection's subflows once a second, out of step with these polls,
    // and a one-poll difference would alias into spikes.
    const from = prev.length ? prev[0] : null;
    if (from) {
      const dt = t - from.t;
      for (const [n, total] of totals) {
        if (!series.has(n)) series.set(n, []);
        const before = from.totals.has(n) ? from.totals.get(n) : total;
        series.get(n).push([t, Math.max(0, (total - before) * 8 / dt)]);
      }
    }
    for (const pts of series.values()) {
      while (pts.length && pts[0][0] < t - SPAN) pts.shift();
    }
    prev.push({ t, totals });
    while (prev.length > 1 && prev[0].t < t - 2.9) prev.shift();
  }

  function draw() {
    const c = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 80, R = 10, T = 10, B = 24;
    const now = performance.now() / 1000;
    // The span grows with the history kept, by whole minutes, to SPAN.
    let oldest = now;
    for (const pts of series.values()) if (pts.length) oldest = Math.min(oldest, pts[0][0]);
    const span = Math.min(SPAN, Math.max(60, Math.ceil((now - oldest) / 60) * 60));
    let max = 1000;
    for (const pts of series.values()) for (const [, v] of pts) max = Math.max(max, v);
    max *= 1.1;
    g.strokeStyle = '#e4e4e4'; g.fillStyle = '#777'; g.font = '11px system-ui, sans-serif';
    for (let k = 0; k <= 4; k++) {
      const y = T + (h - T - B) * (1 - k / 4);
      g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke();
      g.fillText(rate(max * k / 4), 4, y + 4);
    }
    for (let k = 0; k <= 6; k++) {
      const sec = span * k / 6;
      const x = w - R - (w - L - R) * (sec / span);
      const label = !k ? 'now' : span <= 120 ? '-' + sec + ' s' : '-' + (sec / 60).toFixed(1) + ' min';
      g.fillText(label, x - 14, h - 6);
    }
    for (const [name, pts] of series) {
      g.strokeStyle = color(name); g.lineWidth = 2; g.beginPath();
      pts.forEach(([t, v], i) => {
        const x = w - R - (w - L - R) * ((now - t) / span);
        const y = T + (h - T - B) * (1 - v / max);
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
      });
      g.stroke();
    }
    const legend = $('legend');
    legend.textContent = '';
    for (const [name, pts] of series) {
      const span = document.createElement('span');
      const sw = document.createElement('i');
      sw.style.background = color(name);
      span.appendChild(sw);
      const last = pts.length ? pts[pts.length - 1][1] : 0;
      span.appendChild(document.createTextNode(name + ' ' + rate(last)));
      legend.appendChild(span);
    }
  }

  function policies(s) {
    const box = $('policies');
    if (!box.childElementCount) {
      for (const p of s.policies) {
        const b = document.createElement('button');
        b.id = 'policy-' + p;
        b.dataset.policy = p;
        b.textContent = p;
        b.addEventListener('click', () => switchPolicy(p));
        box.appendChild(b);
      }
    }
    for (const b of box.children) {
      b.classList.toggle('active', b.dataset.policy === s.policy);
      b.disabled = !s.policy_switch;
    }
    $('policy-note').textContent = s.policy === null
      ? 'no paths configured (--path)'
      : (s.policy_switch_note || '');
  }

  async function switchPolicy(p) {
    const note = $('policy-note');
    try {
      const r = await fetch('api/policy', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Sixpath-Token': token },
        body: JSON.stringify({ policy: p }),
      });
      note.textContent = r.ok ? 'policy now ' + p : 'refused: ' + (await r.text());
    } catch (e) {
      note.textContent = 'failed: ' + e;
    }
  }

  function tables(s) {
    const rates = new Map([...series].map(([n, pts]) => [n, pts.length ? pts[pts.length - 1][1] : 0]));
    const pb = $('paths').tBodies[0];
    pb.textContent = '';
    for (const p of s.paths) {
      const tr = document.createElement('tr');
      tr.dataset.iface = p.interface;
      tr.dataset.bytes = p.bytes_sent + p.bytes_received;
      tr.dataset.backup = p.backup;
      cell(tr, p.interface);
      cell(tr, p.addresses.join(', ') || '–');
      cell(tr, p.backup ? 'backup' : 'active');
      cell(tr, p.health || '–', p.health || '');
      cell(tr, ms(p.rtt_us || p.probe_rtt_us), 'num');
      cell(tr, p.subflows, 'num');
      cell(tr, bytes(p.bytes_sent), 'num');
      cell(tr, bytes(p.bytes_received), 'num');
      cell(tr, rate(rates.get(p.interface) || 0), 'num');
      pb.appendChild(tr);
    }
    const cb = $('conns').tBodies[0];
    cb.textContent = '';
    for (const c of s.connections) {
      const tr = document.createElement('tr');
      cell(tr, c.id, 'num');
      cell(tr, c.front_end);
      cell(tr, c.protocol);
      cell(tr, c.target);
      cell(tr, c.transport);
      cell(tr, age(c.age_ms), 'num');
      cell(tr, c.interfaces.map((i) => i.interface + ' ' + bytes(i.bytes_sent + i.bytes_received)
        + ' (' + i.subflows + ')').join(', ') || '–');
      cb.appendChild(tr);
    }
    $('conn-count').textContent = '(' + s.relaying + ' relaying, ' + s.connections_open + ' open)';
    const fb = $('failures').tBodies[0];
    fb.textContent = '';
    for (const f of s.recent_failures.slice(0, 10)) {
      const tr = document.createElement('tr');
      cell(tr, age(f.age_ms), 'num');
      cell(tr, f.protocol);
      cell(tr, f.target);
      cell(tr, f.class);
      cell(tr, f.cause);
      fb.appendChild(tr);
    }
    $('uptime').textContent = 'up ' + age(s.uptime_seconds * 1000);
  }

  async function poll() {
    try {
      const r = await fetch('api/status', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      latest = await r.json();
      record(latest);
      policies(latest);
      tables(latest);
      $('state').textContent = 'live';
    } catch (e) {
      $('state').textContent = 'no answer: ' + e.message;
    }
    draw();
    setTimeout(poll, 1000);
  }
  window.sixpathStatus = () => ({ status: latest, series: Object.fromEntries(series) });
  poll();
})();
