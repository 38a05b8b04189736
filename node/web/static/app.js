// zorrent swarm view. Pushed snapshots (server-sent events), no polling loop, no reload.
// Every string from the swarm (torrent names, peer ids, errors) goes in with textContent,
// never as markup. Rows are keyed and reused: an update touches only what changed.
"use strict";

const $ = (id) => document.getElementById(id);
const latencies = [];            // ms from the server making a snapshot to this page drawing it
window.zorrentLatencies = latencies;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(node, text) {
  text = String(text);
  if (node.textContent !== text) node.textContent = text;
}

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-");
}

function rate(bps) {
  if (bps >= 1048576) return (bps / 1048576).toFixed(1) + " MiB/s";
  if (bps >= 1024) return (bps / 1024).toFixed(0) + " KiB/s";
  return Math.round(bps) + " B/s";
}

// ---------------------------------------------------------------- summary + chart
function drawChart(history) {
  const canvas = $("rate-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (history.length < 2) return;
  const t0 = history[0][0], t1 = history[history.length - 1][0];
  let top = 1;
  for (const p of history) top = Math.max(top, p[1], p[2]);
  const x = (t) => ((t - t0) / Math.max(t1 - t0, 1e-6)) * (w - 2) + 1;
  const y = (v) => h - 2 - (v / top) * (h - 14);
  // in a closed swarm every byte down is a byte up: download wide underneath, upload dashed on top
  for (const [col, color, width, dash] of [[1, "#1c7ed6", 4, []], [2, "#e8590c", 1.5, [5, 3]]]) {
    ctx.beginPath();
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash(dash);
    history.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[col])) : ctx.moveTo(x(p[0]), y(p[col]))));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.fillStyle = "#6b7280";
  ctx.font = "10px system-ui";
  ctx.fillText("max " + rate(top), 4, 10);
}

function renderSummary(s) {
  setText($("peers-live"), s.summary.peers_live);
  setText($("peers-expired"), s.summary.peers_expired);
  setText($("torrents-count"), s.summary.torrents);
  setText($("down-rate"), rate(s.summary.down_bps));
  setText($("up-rate"), rate(s.summary.up_bps));
  const t = s.tracker;
  setText($("tracker"), "tracker " + t.endpoint + (t.up ? " up, " + t.announces + " announces" : " not answering"));
  drawChart(s.history);
}

// ---------------------------------------------------------------- torrents + piece map
const torrentBlocks = new Map();

function colour(count, most) {
  if (count === 0) return "#e03131";                       // nobody holds a piece of this bucket
  const f = most > 1 ? (count - 1) / (most - 1) : 1;
  const light = Math.round(78 - f * 40);                    // more holders: darker blue
  return "hsl(212, 70%, " + light + "%)";
}

// qBittorrent's piecesbar idea: one column per bucket of pieces (the server sends at most
// 1,000), runs of one colour drawn as one rectangle, so 10,000 pieces cost no more than 1,000.
function drawPieceMap(canvas, t) {
  const width = Math.max(100, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
  if (canvas.width !== width) canvas.width = width;
  canvas.height = 14;
  const ctx = canvas.getContext("2d");
  const cols = t.buckets || [];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!cols.length) return;
  let start = 0;
  for (let i = 1; i <= cols.length; i++) {
    if (i === cols.length || cols[i] !== cols[start]) {
      ctx.fillStyle = colour(cols[start], t.max_holders);
      const x0 = Math.floor((start * width) / cols.length);
      const x1 = Math.floor((i * width) / cols.length);
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), canvas.height);
      start = i;
    }
  }
}

function renderTorrents(torrents) {
  const box = $("torrents");
  const seen = new Set();
  torrents.forEach((t, i) => {
    seen.add(t.info_hash);
    let b = torrentBlocks.get(t.info_hash);
    if (!b) {
      b = { root: el("div", "torrent"), name: el("span", "name"), meta: el("span", "meta"), canvas: el("canvas"), key: "" };
      b.root.dataset.infoHash = t.info_hash;
      b.root.append(b.name, b.meta, b.canvas);
      torrentBlocks.set(t.info_hash, b);
    }
    if (box.children[i] !== b.root) box.insertBefore(b.root, box.children[i] || null);
    setText(b.name, t.name);
    setText(b.meta, t.info_hash.slice(0, 12) + " · " + t.num_pieces + " pieces · " +
      t.seeders + " seeders · " + t.leechers + " leechers" +
      (t.pieces_per_bucket > 1 ? " · " + t.pieces_per_bucket + " pieces per column" : ""));
    const key = t.max_holders + ":" + (t.buckets || []).join(",");
    if (key !== b.key) { b.key = key; drawPieceMap(b.canvas, t); }
  });
  for (const [ih, b] of torrentBlocks) if (!seen.has(ih)) { b.root.remove(); torrentBlocks.delete(ih); }
}

// ---------------------------------------------------------------- peers
const peerRows = new Map();
const PEER_CELLS = ["peer_id", "address", "state", "pieces", "down", "up", "score", "flags", "jobs"];

function renderJobs(cell, jobs) {
  cell.replaceChildren(...jobs.map((j) => {
    const line = el("div", "job");
    const bar = el("progress");
    bar.max = Math.max(1, j.num_pieces);
    bar.value = j.have;
    line.append(el("span", "jname", j.name), " ", bar, " ",
      el("span", "jstate", j.state + " " + j.have + "/" + j.num_pieces + (j.error ? " (" + j.error + ")" : "")));
    return line;
  }));
}

function renderFlags(cell, p) {
  const flags = [];
  if (p.banned) flags.push(el("span", "flag banned", "banned"));
  if (p.rested) flags.push(el("span", "flag rested", "rested"));
  cell.replaceChildren(...flags);
}

function renderPeers(peers) {
  const body = document.querySelector("#peers tbody");
  const seen = new Set();
  peers.forEach((p, i) => {
    seen.add(p.peer_id);
    let r = peerRows.get(p.peer_id);
    if (!r) {
      r = { tr: el("tr"), cells: {}, jobsKey: "", flagsKey: "" };
      for (const name of PEER_CELLS) {
        const cls = ["pieces", "down", "up", "score"].includes(name) ? name + " num" : name;
        r.cells[name] = el("td", cls);
        r.tr.append(r.cells[name]);
      }
      r.tr.dataset.peerId = p.peer_id;
      peerRows.set(p.peer_id, r);
    }
    if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
    r.tr.className = "state-" + slug(p.state);
    setText(r.cells.peer_id, p.peer_id);
    setText(r.cells.address, p.address);
    setText(r.cells.state, p.state);
    setText(r.cells.pieces, p.pieces);
    setText(r.cells.down, rate(p.down_bps));
    setText(r.cells.up, rate(p.up_bps));
    setText(r.cells.score, p.score === null ? "-" : p.score.toFixed(2));
    const flagsKey = p.banned + ":" + p.rested;
    if (flagsKey !== r.flagsKey) { r.flagsKey = flagsKey; renderFlags(r.cells.flags, p); }
    const jobsKey = JSON.stringify(p.jobs);
    if (jobsKey !== r.jobsKey) { r.jobsKey = jobsKey; renderJobs(r.cells.jobs, p.jobs); }
  });
  for (const [id, r] of peerRows) if (!seen.has(id)) { r.tr.remove(); peerRows.delete(id); }
}

// ---------------------------------------------------------------- events
let lastEventId = 0;

function renderEvents(events) {
  const list = $("events");
  for (const e of events) {
    if (e.id <= lastEventId) continue;
    lastEventId = e.id;
    const li = el("li");
    li.append(el("span", "muted", new Date(e.t * 1000).toLocaleTimeString() + " "),
      el("span", "kind kind-" + slug(e.kind), e.kind), " ", el("span", "text", e.text));
    list.prepend(li);
  }
  while (list.children.length > 200) list.lastElementChild.remove();
}

// ---------------------------------------------------------------- the stream
const renderMs = [];             // ms the page spent drawing each update
window.zorrentRenderMs = renderMs;

function render(s) {
  const started = performance.now();
  renderSummary(s);
  renderTorrents(s.torrents);
  renderPeers(s.peers);
  renderEvents(s.events);
  renderMs.push(performance.now() - started);
  if (renderMs.length > 1000) renderMs.shift();
  const ms = Date.now() - s.ts_ms;
  latencies.push(ms);
  if (latencies.length > 1000) latencies.shift();
  document.body.dataset.seq = s.seq;
  document.body.dataset.latencyMs = ms.toFixed(1);
  setText($("latency"), "update " + s.seq + ", " + ms.toFixed(0) + " ms after the server made it");
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("open", () => { setText($("conn"), "live"); $("conn").className = "conn up"; });
  source.addEventListener("error", () => { setText($("conn"), "reconnecting"); $("conn").className = "conn down"; });
  source.addEventListener("swarm", (e) => render(JSON.parse(e.data)));
}

connect();
