// The operators' console: the fleet's instances, queues, running matches (and one's stored state
// on request), and each game's rule versions with upload, activation and rollback. It reads
// GET /console/overview every 2 s and changes things only through the admin endpoints, with
// the token typed here (kept for this tab only): without it, it shows nothing.

import { $, el } from "./client.js";

const TOKEN = "gamehost.adminToken";
let token = sessionStorage.getItem(TOKEN) || "";
let selectedRoom = null;
const shown = {};

$("#token").value = token;
$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value;
  sessionStorage.setItem(TOKEN, token);
  refresh();
});

async function admin(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    throw Object.assign(new Error(body.error || "refused"), { refused: true });
  }
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function short(version) {
  return version ? version.slice(0, 12) : "–";
}

function uptime(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${seconds % 60} s` : `${seconds} s`;
}

/// Replaces a section's content only when what it shows changed, so that nothing under the
/// pointer (a file picker, a button) is rebuilt every poll.
function render(key, data, draw) {
  const text = JSON.stringify(data);
  if (shown[key] === text) return;
  shown[key] = text;
  draw(data);
}

function drawInstances(instances) {
  $("#instances tbody").replaceChildren(...instances.map((i) =>
    el("tr", { "data-instance": i.instanceId },
      el("td", { class: "mono" }, i.instanceId, i.self ? " " : "", i.self ? el("span", { class: "tag active" }, "this one") : null),
      el("td", {}, i.sockets),
      el("td", {}, uptime(i.uptimeSeconds)),
      el("td", {}, i.version ?? "–"))));
}

function drawQueues(queues) {
  const rows = queues.length
    ? queues.map((q) => el("tr", {}, el("td", {}, q.game), el("td", {}, q.mode), el("td", {}, q.level), el("td", {}, q.players)))
    : [el("tr", {}, el("td", { colspan: 4, class: "status" }, "Nobody is waiting."))];
  $("#queues tbody").replaceChildren(...rows);
}

function drawMatches(matches) {
  $("#match-count").textContent = `${matches.total} running`;
  const rows = matches.listed.map((m) =>
    el("tr", { class: "clickable", "data-room": m.roomId, onclick: () => showStored(m.roomId) },
      el("td", { class: "mono" }, m.roomId),
      el("td", {}, m.game),
      el("td", { class: "mono", title: m.version }, short(m.version)),
      el("td", {}, m.turn),
      el("td", {}, m.players.map((p) =>
        el("span", { class: `tag${p.bot ? " bot" : ""}`, title: p.instanceId || "" },
          p.bot ? `bot ${p.id}` : `${p.id}${p.connected ? "" : " (away)"}`)))));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 5, class: "status" }, "No match is running.")));
  $("#matches tbody").replaceChildren(...rows);
}

async function showStored(room) {
  selectedRoom = room;
  try {
    const game = await admin(`/console/matches/${encodeURIComponent(room)}`);
    $("#stored-room").textContent = room;
    $("#stored-state").textContent = JSON.stringify(game, null, 2);
    $("#stored").classList.remove("hidden");
  } catch (error) {
    $("#stored-state").textContent = error.message;
  }
}

function drawRules({ rules, instances }) {
  const games = Object.entries(rules.games).map(([game, listed]) => {
    const versions = listed.versions.map((v) =>
      el("tr", { "data-version": v.version },
        el("td", { class: "mono", title: v.version }, short(v.version)),
        el("td", {}, v.active ? el("span", { class: "tag active" }, "active") : ""),
        el("td", {}, v.matches),
        el("td", {}, instances.map((i) => el("span", { class: "tag", title: i.instanceId }, `${i.instanceId}: ${i.code?.[v.version] ?? "not loaded"}`))),
        el("td", {}, v.active ? "" : el("button", { class: "secondary activate", onclick: () => activate(game, v.version) }, "Activate"))));
    const picker = el("input", { type: "file", accept: ".wasm,application/wasm", "data-game": game, class: "upload" });
    picker.addEventListener("change", () => picker.files[0] && upload(game, picker.files[0]));
    const drop = el("div", { class: "drop", "data-game": game }, `Drop a ${game} .wasm here, or `, picker);
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) upload(game, file);
    });
    const players = listed.description?.players;
    return el("div", { class: "panel", "data-game": game, style: "background: var(--bg)" },
      el("h2", {}, game, " ", players ? el("span", { class: "tag" }, players.min === players.max ? `${players.min} players` : `${players.min}–${players.max} players`) : null,
        " ", listed.bots ? el("span", { class: "tag bot" }, "bots") : null),
      el("table", {}, el("thead", {}, el("tr", {}, ["version", "", "matches", "code per instance", ""].map((h) => el("th", {}, h)))), el("tbody", {}, versions)),
      el("div", { style: "margin-top: 0.6rem" }, drop));
  });
  const refused = Object.entries(rules.refused || {}).map(([file, why]) => el("p", { class: "status error" }, `refused ${file}: ${why}`));
  $("#rules").replaceChildren(...games, ...refused);
}

async function upload(game, file) {
  $("#rules-status").textContent = `Uploading ${file.name} as ${game}…`;
  try {
    const answer = await admin(`/rules/${encodeURIComponent(game)}`, { method: "POST", body: await file.arrayBuffer() });
    $("#rules-status").textContent = `${game} ${short(answer.version)} is active on every instance.`;
    $("#rules-status").className = "status ok";
  } catch (error) {
    $("#rules-status").textContent = `Refused: ${error.message}`;
    $("#rules-status").className = "status error";
  }
  refresh();
}

async function activate(game, version) {
  try {
    await admin(`/rules/${encodeURIComponent(game)}/active`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ version }),
    });
    $("#rules-status").textContent = `${game} ${short(version)} is active again.`;
    $("#rules-status").className = "status ok";
  } catch (error) {
    $("#rules-status").textContent = `Refused: ${error.message}`;
    $("#rules-status").className = "status error";
  }
  refresh();
}

async function refresh() {
  try {
    const overview = await admin("/console/overview");
    $("#auth").textContent = "";
    $("#data").classList.remove("hidden");
    $("#who").textContent = `served by ${overview.instanceId}`;
    $("#mode").textContent = overview.mode;
    render("instances", overview.instances, drawInstances);
    render("queues", overview.queues, drawQueues);
    render("matches", overview.matches, drawMatches);
    render("rules", { rules: overview.rules, instances: overview.instances }, drawRules);
    if (selectedRoom) showStored(selectedRoom);
  } catch (error) {
    $("#data").classList.add("hidden");
    for (const key of Object.keys(shown)) delete shown[key];
    $("#auth").textContent = error.refused
      ? `The console needs the admin token (ADMIN_TOKEN): ${error.message}`
      : `The host did not answer: ${error.message}`;
    $("#auth").className = "status error";
  }
}

refresh();
setInterval(refresh, 2000);
