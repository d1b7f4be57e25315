// The status page's script: renders each snapshot the server pushes (server-sent events on
// /events) and posts the connect form. No framework, no build step, nothing from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
let lastSnapshot = null;
let asked = null; // the peer the connect form last connected to

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return value.toFixed(1) + " s";
  if (value < 3600) return Math.floor(value / 60) + " min " + Math.floor(value % 60) + " s";
  return (value / 3600).toFixed(1) + " h";
}

function shown(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(2);
  return value;
}

function short(id) { return id ? id.slice(0, 16) + "…" : "–"; }

function table(columns, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  const head = el("tr", {}, ...columns.map(([label]) => el("th", {}, label)));
  const body = rows.map((row) => el("tr", {}, ...columns.map(([, cell]) => {
    const value = cell(row);
    return value instanceof Node ? el("td", {}, value) : el("td", {}, value);
  })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function flatten(value, prefix, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
  } else {
    out.push([prefix, Array.isArray(value) ? value.join(", ") || "–" : shown(value)]);
  }
  return out;
}

function pairs(value) {
  const dl = el("dl");
  for (const [k, v] of flatten(value, "", [])) dl.append(el("dt", {}, k), el("dd", {}, v));
  return dl;
}

function method(name) { return el("span", { class: "m " + (name || "") }, name || "…"); }

// A dual-stack node's snapshot also has profile6: its IPv6 side, classified on its own.
function renderProfile(p, p6) {
  if (!p) { $("nat-type").textContent = "not detected yet"; $("profile").replaceChildren(); return; }
  $("nat-type").textContent = p.nat_type + (p.nat_present ? "" : " (no NAT)");
  const rows = [
    ["mapping", p.mapping], ["filtering", p.filtering], ["allocation", p.allocation],
    ["public IP", p.public_ip], ["public port", p.public_port],
    ["port mapping", p.mapped || "none"],
    ["confidence", p.confidence], ["age", seconds(p.age)],
  ];
  if (p6 !== undefined) {
    rows.push(["IPv6", p6 ? p6.nat_type + ", filtering " + p6.filtering + ", " + p6.public
                          : "not detected yet"]);
  }
  $("profile").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k),
    el("dd", { id: "profile-" + k.replace(" ", "-") }, v)]));
}

function renderConnections(rows) {
  $("connections").replaceChildren(table([
    ["peer", (r) => el("span", { class: "mono", title: r.peer }, short(r.peer))],
    ["method", (r) => method(r.method)],
    ["RTT", (r) => r.rtt_ms.toFixed(1) + " ms"],
    ["path", (r) => r.path],
    ["datagrams out / in", (r) => r.datagrams_sent + " / " + r.datagrams_received],
    ["upgrades", (r) => r.upgrades], ["fallbacks", (r) => r.fallbacks],
    ["age", (r) => seconds(r.age)],
    ["", (r) => { const b = el("button", { class: "small" }, "close");
      b.onclick = () => post("/close", r.peer); return b; }],
  ], rows, "no connections"));
}

function renderRelay(relay) {
  $("relay-card").hidden = !relay;
  if (!relay) return;
  $("relay").replaceChildren(
    table([["session", (s) => s.id], ["between", (s) => s.between], ["bytes", (s) => s.bytes],
      ["datagrams", (s) => s.datagrams], ["age", (s) => seconds(s.age)]],
      relay.sessions, "no relayed sessions"),
    el("div", { class: "figures" },
      el("div", {}, el("h3", {}, "limits"), pairs(relay.limits)),
      el("div", {}, el("h3", {}, "traffic"), pairs(relay.figures))));
}

function renderFigures(figures) {
  $("figures").replaceChildren(el("div", { class: "figures" },
    ...Object.entries(figures || {}).map(([name, value]) =>
      el("div", {}, el("h3", {}, name), typeof value === "object" ? pairs(value) : el("p", {}, value)))));
}

function renderMatrix(s) {
  const head = el("tr", {}, el("th", {}, ""), ...s.types.map((t) => el("th", {}, t)));
  const rows = s.types.map((a, i) => el("tr", {}, el("th", {}, a,
    el("br"), el("small", {}, s.detected[a] || "…")),
    ...s.cells[i].map((cell, j) => el("td", { id: "cell-" + i + "-" + j }, method(cell)))));
  $("matrix").replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  $("matrix-progress").textContent = s.done + " of " + s.pairs + " pairs";
}

function followConnect(s) {
  if (!asked) return;
  const row = s.connections.find((r) => r.peer === asked);
  if (row) say("connected (" + row.method + ")", "ok");
  else say("the connection to " + short(asked) + " is closed", "error");
}

function render(s) {
  lastSnapshot = s;
  document.body.className = s.kind;
  $("kind").textContent = s.kind;
  if (s.kind === "demo") { renderMatrix(s); return; }
  $("node-id").textContent = s.node_id;
  $("public-endpoint").textContent = s.public_endpoint || "not known yet";
  renderRelay(s.relay);
  renderFigures(s.kind === "gateway" ? Object.assign({ addresses: s.addresses }, s.figures) : s.figures);
  if (s.kind !== "node") return;
  renderProfile(s.profile, s.profile6);
  renderConnections(s.connections);
  $("pending").replaceChildren(table([
    ["peer", (p) => el("span", { class: "mono" }, short(p.peer))], ["attempt", (p) => p.attempt],
    ["targets", (p) => p.targets.join(", ")], ["age", (p) => seconds(p.age)],
  ], s.pending, "none"));
  $("cache").replaceChildren(pairs(s.cache));
  followConnect(s);
}

function say(text, kind) {
  const status = $("connect-status");
  status.textContent = text;
  status.className = "status " + (kind || "");
}

async function post(path, peer) {
  try {
    const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ peer }) });
    return await response.json();
  } catch (error) {
    return { ok: false, error: "the page lost its server (" + error.message + ")" };
  }
}

async function connect(event) {
  event.preventDefault();
  const peer = $("peer").value.trim();
  asked = null;
  if (!peer) { say("enter a peer's node id", "error"); return; }
  say("connecting…");
  $("connect").disabled = true;
  const answer = await post("/connect", peer);
  $("connect").disabled = false;
  if (!answer.ok) { say(answer.error, "error"); return; }
  asked = answer.peer;
  say("connected (" + answer.method + ")", "ok");
}

function start() {
  $("connect-form").addEventListener("submit", connect);
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (event) => {
    $("live").textContent = "live"; $("live").className = "badge";
    try { render(JSON.parse(event.data)); } catch (error) { console.error(error); }
  });
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "badge off"; };
}

document.addEventListener("DOMContentLoaded", start);
