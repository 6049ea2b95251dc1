/**
 * The dashboard's page: HTML, CSS and the browser script as text, so that the image's one esbuild
 * bundle carries them (nothing to copy beside it, nothing fetched from a CDN: the page works
 * offline). Plain DOM and SVG: the picture is a circle of members and a line per pair, which needs
 * no library.
 *
 * Everything the page shows comes from the API or an agent, which any holder of `update peers` can
 * write: the script only ever sets textContent and attribute values, never markup (no innerHTML),
 * and the server's Content-Security-Policy forbids inline script, so even a slip would not run.
 *
 * The script is written without template literals, so it can live inside this one.
 */

/**
 * The page's icon: three members and their tunnels. Served as a file (the CSP allows images from
 * 'self' only, and no data: URLs); without one Chromium asks for /favicon.ico and logs the 404 as an
 * error on every load.
 */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<g stroke="#2f6fbf" stroke-width="2.5"><line x1="16" y1="5" x2="5" y2="26"/><line x1="16" y1="5" x2="27" y2="26"/><line x1="5" y1="26" x2="27" y2="26"/></g>
<g fill="#2f9e44"><circle cx="16" cy="6" r="4.5"/><circle cx="5.5" cy="25.5" r="4.5"/><circle cx="26.5" cy="25.5" r="4.5"/></g>
</svg>
`;

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AKS Mesh</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="dashboard.css">
<script src="dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>AKS Mesh</h1>
  <span id="counts" class="muted"></span>
  <span id="conn" class="badge unknown">connecting…</span>
</header>
<main>
  <section id="picture">
    <svg id="mesh" viewBox="0 0 640 640" role="img" aria-label="The mesh: members and the health of each pair"></svg>
    <p class="legend">
      <span class="key healthy"></span>healthy
      <span class="key unhealthy"></span>unhealthy
      <span class="key unknown"></span>unknown
      <span class="sep">·</span> ● node Peer &nbsp;○ external Peer &nbsp;■ Gateway <span class="sep">·</span> click a member for its peers
    </p>
    <div id="problems"><h2>Unhealthy pairs</h2><ul id="pairs-list"></ul></div>
  </section>
  <section id="side">
    <h2>Members</h2>
    <table id="members">
      <thead><tr><th>Kind</th><th>Name</th><th>Node</th><th>Ready</th><th title="peers with a handshake in the last 3 minutes / desired">Healthy</th><th>Endpoint</th><th>Mesh IP</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="no-peer" class="muted"></p>
    <h2 id="detail-title">Peers of the selected member</h2>
    <p id="detail-state" class="muted">Select a member in the picture or the table.</p>
    <table id="peers">
      <thead><tr><th>Peer</th><th>Health</th><th>Endpoint</th><th>Latest handshake</th><th>Received</th><th>Sent</th><th>Rx rate</th><th>Tx rate</th></tr></thead>
      <tbody></tbody>
    </table>
    <ul id="changes"></ul>
    <h2>Refused objects</h2>
    <table id="refused">
      <thead><tr><th>Kind</th><th>Name</th><th>Reason</th><th>Why</th><th>Said by</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --ok: #1a7f37; --bad: #cf222e; --unknown: #8c959f; --fg: #1f2328; --muted: #59636e; --line: #d0d7de; --sel: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; align-items: baseline; gap: 16px; padding: 10px 18px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 14px; margin: 16px 0 6px; }
main { display: flex; flex-wrap: wrap; gap: 12px; padding: 8px 18px; }
#picture { flex: 0 1 560px; min-width: 320px; }
#side { flex: 1 1 520px; min-width: 360px; }
svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: break-word; }
th { font-weight: 600; color: var(--muted); }
tbody tr { cursor: pointer; }
tbody tr.selected { background: #ddf4ff; }
.muted { color: var(--muted); }
.badge { border-radius: 10px; padding: 1px 8px; font-size: 12px; color: #fff; }
.badge.healthy { background: var(--ok); } .badge.unhealthy { background: var(--bad); } .badge.unknown { background: var(--unknown); }
.health-healthy { color: var(--ok); } .health-unhealthy { color: var(--bad); font-weight: 600; } .health-unknown { color: var(--muted); }
.legend { color: var(--muted); font-size: 12px; margin: 4px 0; }
.legend .key { display: inline-block; width: 18px; height: 0; border-top: 3px solid; margin: 0 4px 3px 10px; }
.legend .key.healthy { border-color: var(--ok); } .legend .key.unhealthy { border-color: var(--bad); } .legend .key.unknown { border-color: var(--unknown); border-top-style: dashed; }
.legend .sep { margin: 0 6px; }
line.pair { stroke-width: 3; }
line.pair.healthy { stroke: var(--ok); }
line.pair.unhealthy { stroke: var(--bad); stroke-width: 4; }
line.pair.unknown { stroke: var(--unknown); stroke-dasharray: 6 5; }
svg.has-selection line.pair { opacity: 0.3; }
svg.has-selection line.pair.mine { opacity: 1; }
g.member { cursor: pointer; }
g.member .shape { fill: #fff; stroke: var(--fg); stroke-width: 2; }
g.member.node .shape { fill: #eef3f8; }
g.member.not-ready .shape { stroke: var(--bad); stroke-dasharray: 4 3; }
g.member.selected .shape { stroke: var(--sel); stroke-width: 4; }
g.member:focus { outline: none; } g.member:focus .shape { stroke: var(--sel); }
g.member text { font-size: 13px; fill: var(--fg); }
g.member text.sub { font-size: 11px; fill: var(--muted); }
#pairs-list, #changes { margin: 4px 0; padding-left: 18px; font-size: 13px; }
#pairs-list li { color: var(--bad); }
#changes { color: var(--muted); max-height: 9em; overflow: auto; }
`;

export const PAGE_JS = `'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  var state = { view: null, api: null, streams: [], selected: null, live: {}, connected: false };

  function $(id) { return document.getElementById(id); }
  // Text only, never markup: every string here may come from an object someone else wrote.
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function row(cells, attrs) {
    var tr = el('tr', attrs);
    cells.forEach(function (c) {
      var td = el('td');
      if (c && typeof c === 'object' && c.text !== undefined) { td.textContent = String(c.text); if (c.cls) td.className = c.cls; if (c.title) td.title = String(c.title); }
      else td.textContent = c === null || c === undefined ? '-' : String(c);
      tr.appendChild(td);
    });
    return tr;
  }
  function bytes(n) {
    if (n === null || n === undefined || n === '') return '-';
    var v = Number(n); if (!isFinite(v)) return '-';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']; var i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function rate(n) { return n === null || n === undefined ? '-' : bytes(n) + '/s'; }
  function age(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return 'never';
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 120) return s + ' s ago';
    if (s < 7200) return Math.round(s / 60) + ' min ago';
    return Math.round(s / 3600) + ' h ago';
  }
  function member(key) {
    var ms = state.view ? state.view.members : [];
    for (var i = 0; i < ms.length; i++) if (ms[i].key === key) return ms[i];
    return null;
  }
  function pairOf(a, b) {
    var ps = state.view ? state.view.pairs : [];
    for (var i = 0; i < ps.length; i++) if ((ps[i].a === a && ps[i].b === b) || (ps[i].a === b && ps[i].b === a)) return ps[i];
    return null;
  }
  // A reason in words where its name alone misleads: DeviceUnreadable blames the member that says it.
  function reasonWords(reason) {
    return reason === 'DeviceUnreadable' ? 'DeviceUnreadable: cannot read its own device' : reason;
  }
  function pairText(p) {
    var why = p.sides.filter(function (s) { return s.reason; }).map(function (s) {
      return s.from + ': ' + reasonWords(s.reason) + (s.lastHandshake ? ' (last handshake ' + age(Date.parse(s.lastHandshake)) + ')' : '');
    });
    return p.a + ' ↔ ' + p.b + ': ' + p.health + (why.length ? ' — ' + why.join('; ') : '');
  }

  // What a side says of a pair, for a table cell seen from the selected member: its own word first and
  // bare, else the other side's with its name ("unknown (Peer/node-b: not Ready)").
  function sideWords(p, key) {
    var said = p.sides.filter(function (s) { return s.reason && (p.health !== 'unhealthy' || s.health === 'unhealthy'); });
    var side = said.filter(function (s) { return s.from === key; })[0] || said[0];
    return side ? ' (' + (side.from === key ? '' : side.from + ': ') + reasonWords(side.reason) + ')' : '';
  }

  // ------------------------------------------------------------------ the picture
  function drawPicture() {
    var root = $('mesh'); clear(root);
    var view = state.view; if (!view) return;
    var ms = view.members.filter(function (m) { return m.accepted !== 'False'; });
    var n = ms.length, cx = 320, cy = 320;
    var r = n <= 1 ? 0 : Math.min(230, 170 + n * 6);
    var pos = {};
    ms.forEach(function (m, i) {
      var a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, n);
      pos[m.key] = { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) };
    });
    root.setAttribute('class', state.selected ? 'has-selection' : '');
    view.pairs.forEach(function (p) {
      var a = pos[p.a], b = pos[p.b]; if (!a || !b) return;
      var mine = state.selected && (p.a === state.selected || p.b === state.selected);
      var line = svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, 'class': 'pair ' + p.health + (mine ? ' mine' : ''), 'data-a': p.a, 'data-b': p.b, 'data-health': p.health });
      line.appendChild(svg('title', {}, pairText(p)));
      root.appendChild(line);
    });
    var small = n > 24;
    ms.forEach(function (m) {
      var p = pos[m.key];
      var cls = 'member ' + (m.nodeName ? 'node' : 'external') + (m.ready === 'True' ? '' : ' not-ready') + (state.selected === m.key ? ' selected' : '');
      var g = svg('g', { 'class': cls, 'data-member': m.key, 'data-ready': m.ready || 'none', 'data-healthy': m.healthy || '', tabindex: 0, role: 'button' });
      g.setAttribute('aria-label', m.key + ', Ready ' + (m.ready || 'unknown') + ', healthy ' + (m.healthy || 'unknown'));
      var size = small ? 9 : 20;
      if (m.kind === 'Gateway') g.appendChild(svg('rect', { 'class': 'shape', x: p.x - size, y: p.y - size, width: 2 * size, height: 2 * size }));
      else g.appendChild(svg('circle', { 'class': 'shape', cx: p.x, cy: p.y, r: size }));
      // Labels outside the circle, away from the centre, so lines do not cross them.
      var dx = p.x - cx, dy = p.y - cy, d = Math.sqrt(dx * dx + dy * dy);
      var ux = d ? dx / d : 0, uy = d ? dy / d : 1;
      // Beside the shape on the left and right of the circle, above or below it at the top and bottom.
      var anchor = ux > 0.45 ? 'start' : ux < -0.45 ? 'end' : 'middle';
      var lx = p.x + ux * (size + 8), ly = p.y + uy * (size + 10) + (uy > 0.45 ? 8 : uy < -0.45 ? -14 : -2);
      g.appendChild(svg('text', { x: lx, y: ly, 'text-anchor': anchor }, m.name));
      g.appendChild(svg('text', { 'class': 'sub', x: lx, y: ly + 14, 'text-anchor': anchor }, (m.ready === 'True' ? 'Ready' : 'not Ready') + ' · ' + (m.healthy || '?')));
      g.appendChild(svg('title', {}, m.key + (m.readyMessage ? ': ' + m.readyMessage : '')));
      g.addEventListener('click', function () { select(m.key); });
      g.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(m.key); } });
      root.appendChild(g);
    });
    if (n === 0) root.appendChild(svg('text', { x: cx, y: cy, 'text-anchor': 'middle', 'class': 'muted' }, state.api && state.api.synced ? 'no Peers or Gateways: is the agent DaemonSet running?' : 'reading the API…'));
  }

  // ------------------------------------------------------------------ tables
  function drawMembers() {
    var body = document.querySelector('#members tbody'); clear(body);
    var view = state.view; if (!view) return;
    view.members.forEach(function (m) {
      var tr = row([
        m.kind, m.name, m.nodeName,
        { text: m.ready || '-', cls: m.ready === 'True' ? 'health-healthy' : 'health-unhealthy', title: m.readyMessage || '' },
        { text: m.healthy || '-', cls: m.unhealthy.length ? 'health-unhealthy' : '' },
        m.endpoint, m.meshIP,
      ], { 'data-member': m.key });
      if (state.selected === m.key) tr.className = 'selected';
      tr.addEventListener('click', function () { select(m.key); });
      body.appendChild(tr);
    });
    var lonely = view.nodes.filter(function (n) { return !n.hasPeer; }).map(function (n) { return n.name; });
    $('no-peer').textContent = lonely.length ? 'Nodes without a Peer (no agent registered yet): ' + lonely.join(', ') : '';
    var list = $('pairs-list'); clear(list);
    var bad = view.pairs.filter(function (p) { return p.health === 'unhealthy'; });
    bad.forEach(function (p) { list.appendChild(el('li', { 'data-pair': p.a + '|' + p.b }, pairText(p))); });
    if (!bad.length) list.appendChild(el('li', { 'class': 'muted' }, 'none'));
    var ready = view.members.filter(function (m) { return m.ready === 'True'; }).length;
    $('counts').textContent = view.members.length + ' members, ' + ready + ' Ready, ' + bad.length + ' unhealthy pairs, ' + view.refused.length + ' refused' +
      (view.pairsPartial ? ' · a large mesh: only pairs that are not healthy are drawn' + (view.pairsPartial.omitted ? ' (' + view.pairsPartial.omitted + ' more not shown)' : '') : '');
  }

  function drawRefused() {
    var body = document.querySelector('#refused tbody'); clear(body);
    var rows = (state.view ? state.view.refused : []).map(function (r) { return [r.kind, r.name, r.reason, r.message, r.source]; });
    // What the selected member's own stream says it refused (live, before any status write).
    var live = state.selected && state.live[state.selected];
    if (live && live.desired && Array.isArray(live.desired.refused)) {
      live.desired.refused.forEach(function (r) { rows.push([r.kind, r.name, r.reason, (r.field ? r.field + ': ' : '') + (r.message || ''), 'stream of ' + state.selected]); });
    }
    rows.forEach(function (c) { body.appendChild(row(c, { 'data-refused': c[0] + '/' + c[1] })); });
    if (!rows.length) body.appendChild(row(['-', 'none', '', '', '']));
  }

  function drawDetail() {
    var body = document.querySelector('#peers tbody'); clear(body);
    var changes = $('changes'); clear(changes);
    var key = state.selected;
    var m = key ? member(key) : null;
    if (!key) { $('detail-title').textContent = 'Peers of the selected member'; $('detail-state').textContent = 'Select a member in the picture or the table.'; return; }
    $('detail-title').textContent = 'Peers of ' + key;
    var live = state.live[key];
    var words = [];
    if (!m) words.push('not in the API (deleted?)');
    else {
      words.push('Ready ' + (m.ready || '-') + (m.readyMessage ? ' (' + m.readyMessage + ')' : ''));
      words.push('healthy ' + (m.healthy || '-'));
      if (m.lastSyncTime) words.push('status written ' + age(Date.parse(m.lastSyncTime)));
    }
    if (state.streams.indexOf(key) < 0) words.push('no stream for it (aks-mesh dashboard --stream ' + (m ? m.name : key) + '=ws://…): health from its status, no traffic figures');
    else if (!live || live.state !== 'open') words.push('stream: ' + (live ? live.state + (live.error ? ': ' + live.error : '') : 'connecting'));
    else words.push('live from its stream' + (live.deviceError ? ' (device: ' + live.deviceError + ')' : '') + (live.lastPass ? ', last pass ' + age(live.lastPass.time) + (live.lastPass.error ? ' failed: ' + live.lastPass.error : '') : ''));
    $('detail-state').textContent = words.join(' · ');
    var device = live && live.device;
    if (device && Array.isArray(device.peers)) {
      device.peers.forEach(function (p) {
        var name = typeof p.name === 'string' ? p.name : null;
        var pair = name ? pairOf(key, name) : null;
        body.appendChild(row([
          name || String(p.publicKey).slice(0, 12) + '…',
          { text: pair ? pair.health + sideWords(pair, key) : '-', cls: pair ? 'health-' + pair.health : '', title: pair ? pairText(pair) : '' },
          p.endpoint,
          typeof p.latestHandshake === 'number' ? age(p.latestHandshake * 1000) : 'never',
          bytes(p.rxBytes), bytes(p.txBytes), rate(p.rxRate), rate(p.txRate),
        ], { 'data-peer': name || p.publicKey }));
      });
    } else if (m && state.view) {
      state.view.pairs.forEach(function (p) {
        if (p.a !== key && p.b !== key) return;
        var other = p.a === key ? p.b : p.a;
        var o = member(other);
        var last = p.sides.filter(function (s) { return s.lastHandshake; })[0];
        body.appendChild(row([
          other,
          { text: p.health + sideWords(p, key), cls: 'health-' + p.health, title: pairText(p) },
          o ? o.endpoint : null,
          last ? age(Date.parse(last.lastHandshake)) : p.health === 'healthy' ? 'within 3 min' : '-',
          '-', '-', '-', '-',
        ], { 'data-peer': other }));
      });
    }
    if (live && live.changes) live.changes.forEach(function (c) { changes.appendChild(el('li', {}, c)); });
  }

  function drawAll() { drawPicture(); drawMembers(); drawRefused(); drawDetail(); }

  // ------------------------------------------------------------------ the server's socket
  var ws = null, retry = 500;
  function send(msg) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg)); }
  function select(key) {
    state.selected = state.selected === key ? null : key;
    if (state.selected) history.replaceState(null, '', '#' + encodeURIComponent(state.selected)); else history.replaceState(null, '', location.pathname);
    send({ type: 'select', member: state.selected });
    drawAll();
  }
  function setConn(text, cls) { var c = $('conn'); c.textContent = text; c.className = 'badge ' + cls; }
  function onFrame(key, f) {
    var live = state.live[key] || (state.live[key] = { state: 'open', changes: [] });
    if (f.type === 'device') { live.device = f.device; live.deviceError = f.device ? null : (f.error || 'the device could not be read'); }
    else if (f.type === 'desired') live.desired = f;
    else if (f.type === 'hello') live.hello = f.member;
    else if (f.type === 'pass') live.lastPass = f;
    else if (f.type === 'change') {
      var t = new Date(f.time).toLocaleTimeString();
      (f.added || []).forEach(function (x) { live.changes.unshift(t + ' added ' + x.kind + '/' + x.name); });
      (f.removed || []).forEach(function (x) { live.changes.unshift(t + ' removed ' + x.kind + '/' + x.name); });
      (f.refused || []).forEach(function (x) { live.changes.unshift(t + ' refused ' + x.kind + '/' + x.name + ': ' + x.message); });
      live.changes.length = Math.min(live.changes.length, 20);
    }
  }
  function connect() {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    ws.onopen = function () { retry = 500; state.connected = true; setConn('live', 'healthy'); if (state.selected) send({ type: 'select', member: state.selected }); };
    ws.onmessage = function (ev) {
      var msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === 'cluster') {
        state.view = msg.view; state.api = msg.api; state.streams = msg.streams || [];
        if (msg.api && msg.api.error) setConn('API: ' + msg.api.error, 'unhealthy');
        else if (msg.api && !msg.api.synced) setConn('reading the API…', 'unknown');
        else setConn('live', 'healthy');
        drawAll();
      } else if (msg.type === 'stream') {
        var live = state.live[msg.member] || (state.live[msg.member] = { changes: [] });
        live.state = msg.state; live.error = msg.error || null;
        if (msg.state !== 'open') { live.device = null; }
        if (msg.member === state.selected) { drawDetail(); drawRefused(); }
      } else if (msg.type === 'frame') {
        onFrame(msg.member, msg.frame);
        if (msg.member === state.selected) { drawDetail(); drawRefused(); }
      }
    };
    ws.onclose = function () {
      state.connected = false;
      setConn('disconnected from the dashboard; retrying', 'unhealthy');
      setTimeout(connect, retry); retry = Math.min(retry * 2, 5000);
    };
  }
  if (location.hash.length > 1) { try { state.selected = decodeURIComponent(location.hash.slice(1)); } catch (e) { state.selected = null; } }
  connect();
  // Handshake ages move with the clock.
  setInterval(function () { if (state.selected) drawDetail(); }, 1000);
})();
`;
