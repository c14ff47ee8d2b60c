// Wizard battle in the browser: the lobby, the map, every wizard's health, the spells with
// their cooldowns and reach, the round timer, what happened each round, and the end.
// It speaks the host's protocol (docs/PROTOCOL.md) and nothing else.

import { $, el, connectPlayer, request, logTo, refusal } from "./client.js";

// What each spell does and where it reaches (the rules are in rules/wizard-battle).
const SPELLS = {
  lightning: { targeted: true, what: "100 damage on the target cell; reaches any cell" },
  fireball: { targeted: true, what: "50 / 30 / 15 at 0 / 1 / 2 from the cell; a direct hit poisons" },
  teleport: { targeted: true, what: "move to any valley cell" },
  heal: { targeted: false, what: "+30 health (level 5)" },
  laser: { targeted: true, what: "35 on the cell's whole row and column (level 10)" },
  rockThrow: { targeted: true, what: "35 along a row, column or diagonal from you" },
  spin: { targeted: false, what: "50 / 30 / 15 around you" },
  food: { targeted: false, what: "+30 health" },
  dash: { targeted: true, what: "move to a valley cell at most 3 away" },
};

const match = { room: null, me: null, view: null, endsAt: null, spell: null, target: null, over: false };
const log = logTo($("#log"));
const say = (text, kind = "") => {
  $("#status").textContent = text;
  $("#status").className = `status ${kind}`;
};

const socket = connectPlayer("gamehost.wizard-battle", {
  session: (session) => {
    match.me = session.playerId;
    $("#who").textContent = `you are ${session.playerId}`;
    $("#who").dataset.player = session.playerId;
  },
  connect_error: (error) => say(`Could not connect: ${error.message}`, "error"),
  disconnect: () => say("Disconnected; reconnecting…", "error"),
  waiting: () => {
    say("Waiting for an opponent… (open this page in another tab to play yourself)");
    $("#leave").classList.remove("hidden");
  },
  matchFound: (found) => {
    startMatch(found.roomId);
    const others = found.players.filter((p) => p.id !== match.me);
    log(`Match ${found.roomId} against ${others.map((p) => name(p.id)).join(", ")}`);
  },
  resumed: (resumed) => {
    startMatch(resumed.roomId);
    log(`Back in match ${resumed.roomId}, round ${resumed.view.round}`);
    show(resumed.view, resumed.roundEndsAt);
  },
  view: (update) => {
    if (update.roomId === match.room) show(update.view, update.roundEndsAt);
  },
  gameEvent: (message) => {
    if (message.roomId === match.room) told(message.event);
  },
  gameOver: (over) => {
    if (over.roomId === match.room) finish(over.winners);
  },
  opponentDisconnected: (gone) => log(`${name(gone.playerId)} lost their connection; they have ${Math.round(gone.reconnectWithinMs / 1000)} s to come back`),
  opponentReconnected: (back) => log(`${name(back.playerId)} is back`),
  serverError: (error) => say(`${error.event}: ${refusal(error)}`, "error"),
});

function name(id) {
  if (id === match.me) return "you";
  return id.startsWith("bot-") ? `the bot (${id})` : id;
}

function possessive(id) {
  return id === match.me ? "your" : `${name(id)}'s`;
}

async function join(vsBot) {
  const level = Number($("#level").value);
  if (!Number.isInteger(level)) return say("A level is a whole number.", "error");
  say(vsBot ? "Starting a match against the bot…" : "Looking for an opponent…");
  try {
    const answer = await request(socket, "joinMatchmaking", vsBot ? { level, vsBot: true } : { level });
    if (answer && answer.success === false) say(refusal(answer), "error");
  } catch {
    say("The server did not answer; try again.", "error");
  }
}

$("#find").addEventListener("click", () => join(false));
$("#vs-bot").addEventListener("click", () => join(true));
$("#leave").addEventListener("click", async () => {
  await request(socket, "leaveMatchmaking", {});
  $("#leave").classList.add("hidden");
  say("You left the queue.");
});
$("#play-again").addEventListener("click", () => {
  Object.assign(match, { room: null, view: null, endsAt: null, spell: null, target: null, over: false });
  $("#match").classList.add("hidden");
  $("#result-panel").classList.add("hidden");
  $("#lobby").classList.remove("hidden");
  $("#log").replaceChildren();
  say("Pick a level and find an opponent.");
});
$("#cast").addEventListener("click", cast);

function startMatch(room) {
  match.room = room;
  match.over = false;
  $("#lobby").classList.add("hidden");
  $("#leave").classList.add("hidden");
  $("#match").classList.remove("hidden");
  $("#match").dataset.room = room;
}

function show(view, endsAt) {
  match.view = view;
  match.endsAt = endsAt ?? null;
  $("#round").textContent = `Round ${view.round}`;
  drawBoard(view);
  drawWizards(view);
  drawSpells(view);
  if (view.winners) finish(view.winners);
}

function drawBoard(view) {
  const board = $("#board");
  const size = view.map.length;
  board.style.gridTemplateColumns = `repeat(${size}, 1fr)`;
  board.style.gridTemplateRows = `repeat(${size}, 1fr)`;
  board.classList.toggle("aiming", Boolean(match.spell && SPELLS[match.spell]?.targeted));
  const cells = [];
  view.map.forEach((row, y) => {
    [...row].forEach((tile, x) => {
      const mine = view.you.position.x === x && view.you.position.y === y;
      const aimed = match.target && match.target.x === x && match.target.y === y;
      const cell = el("div", {
        class: `cell ${tile}${mine ? " me" : ""}${aimed ? " target" : ""}`,
        "data-x": x,
        "data-y": y,
        title: `(${x}, ${y}) ${{ V: "valley", R: "rock", W: "water" }[tile] ?? tile}`,
        onclick: () => aimAt(x, y),
      }, el("span", { class: "xy" }, `${x},${y}`));
      cells.push(cell);
    });
  });
  board.replaceChildren(...cells);
}

function drawWizards(view) {
  const bar = (who, wizard, label) => {
    const percent = Math.max(0, Math.round((100 * wizard.hp) / wizard.maxHp));
    return el("div", { class: `hp${wizard.alive ? "" : " dead"}`, "data-wizard": who },
      el("div", { class: "name" },
        el("span", {}, label, " ", el("span", { class: "tag" }, wizard.class)),
        el("span", { class: "mono", "data-hp": wizard.hp }, `${wizard.hp} / ${wizard.maxHp}`)),
      el("div", { class: "bar" }, el("span", { style: `width: ${percent}%` })));
  };
  const you = view.you;
  const rows = [bar(you.id, you, `You${you.poison ? " · poisoned" : ""}`)];
  for (const other of view.opponents) {
    const state = other.alive ? (other.submitted ? " · has cast" : " · thinking") : " · fallen";
    rows.push(bar(other.id, other, `${name(other.id)}${state}`));
  }
  $("#wizards").replaceChildren(...rows);
}

function drawSpells(view) {
  const buttons = Object.entries(view.you.spells).map(([spell, cooldown]) => {
    const known = SPELLS[spell] ?? { targeted: true, what: "" };
    return el("button", {
      class: `spell${cooldown > 0 ? " cooling" : ""}${match.spell === spell ? " selected" : ""}`,
      "data-spell": spell,
      disabled: cooldown > 0 || !view.you.alive || Boolean(view.you.submitted) || match.over,
      onclick: () => choose(spell),
    },
    el("span", { class: "cd" }, cooldown > 0 ? `ready in ${cooldown}` : "ready"),
    spell,
    el("span", { class: "what" }, known.what));
  });
  $("#spells").replaceChildren(...buttons);
  const submitted = view.you.submitted;
  $("#cast-status").textContent = submitted
    ? `You cast ${submitted.spell}${submitted.target ? ` at (${submitted.target.x}, ${submitted.target.y})` : ""}; waiting for the round to resolve.`
    : "";
  updateCastButton();
}

function choose(spell) {
  match.spell = spell;
  if (!SPELLS[spell]?.targeted) match.target = null;
  $("#aim").textContent = SPELLS[spell]?.targeted ? `${spell}: now click a cell on the map.` : `${spell}: press Cast.`;
  show(match.view, match.endsAt);
}

function aimAt(x, y) {
  if (!match.spell || !SPELLS[match.spell]?.targeted) return;
  match.target = { x, y };
  $("#aim").textContent = `${match.spell} at (${x}, ${y}): press Cast.`;
  show(match.view, match.endsAt);
}

function updateCastButton() {
  const spell = SPELLS[match.spell];
  const ready = match.spell && (!spell?.targeted || match.target) && !match.view?.you.submitted && !match.over;
  $("#cast").disabled = !ready;
}

async function cast() {
  const action = { spell: match.spell };
  if (SPELLS[match.spell]?.targeted) action.target = match.target;
  $("#cast").disabled = true;
  try {
    const answer = await request(socket, "submitAction", { roomId: match.room, action });
    if (answer.success) {
      match.spell = null;
      match.target = null;
      $("#aim").textContent = "Cast. Choose a spell, then a cell, next round.";
    } else {
      $("#cast-status").textContent = refusal(answer);
      $("#cast-status").className = "status error";
      log(`Refused: ${refusal(answer)}`, "refusal");
    }
  } catch {
    $("#cast-status").textContent = "The server did not answer; try again.";
  }
  if (match.view) show(match.view, match.endsAt);
}

function told(event) {
  if (event.type === "submitted") {
    if (event.player !== match.me) log(`${name(event.player)} cast a spell (round ${event.round})`);
  } else if (event.type === "roundResolved") {
    const casts = event.casts.map((c) => `${name(c.caster)} ${c.spell}`).join(", ") || "nobody cast";
    log(`Round ${event.round}: ${casts}`);
    for (const effect of event.effects) {
      const by = effect.caster ? `${possessive(effect.caster)} ${effect.spell}` : "poison";
      const change = effect.change < 0 ? `${-effect.change} damage` : `+${effect.change} health`;
      log(`  ${by}: ${change} to ${name(effect.target)}`);
    }
    for (const fallen of event.fallen) log(`  ${name(fallen)} fell`);
  } else if (event.type === "playerLeft") {
    log(`${name(event.player)} left the match`);
  } else {
    log(JSON.stringify(event));
  }
}

function finish(winners) {
  if (match.over) return;
  match.over = true;
  const result = $("#result");
  const [text, kind] = winners.length === 0
    ? ["A draw: nobody is left standing.", "draw"]
    : winners.includes(match.me)
      ? ["You won!", "won"]
      : [`You lost: ${winners.map(name).join(", ")} won.`, "lost"];
  result.textContent = text;
  result.className = `banner ${kind}`;
  result.dataset.outcome = kind;
  $("#result-panel").classList.remove("hidden");
  $("#again").classList.remove("hidden");
  log(text);
  $("#timer").textContent = "over";
  if (match.view) drawSpells(match.view);
}

setInterval(() => {
  const timer = $("#timer");
  if (!match.endsAt || match.over) {
    timer.textContent = match.over ? "over" : "–";
    return;
  }
  const left = Math.max(0, Math.ceil((match.endsAt - Date.now()) / 1000));
  timer.textContent = `${left} s`;
  timer.style.color = left <= 5 ? "var(--bad)" : "";
}, 250);
