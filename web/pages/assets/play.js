// The playground: join any game the host serves, see your view as it changes and every event
// as it arrives, send actions typed as JSON, and see refusals with their codes. Nothing here
// knows a game: what it offers comes from GET /rules.

import { $, el, connectPlayer, request, logTo } from "./client.js";

const log = logTo($("#log"));
const state = { room: null, me: null, games: {} };
const say = (text, kind = "") => {
  $("#status").textContent = text;
  $("#status").className = `status ${kind}`;
};

const socket = connectPlayer("gamehost.playground", {
  connect_error: (error) => say(`Could not connect: ${error.message}`, "error"),
});
// Every event, in the order it arrived; a few also move the page on.
socket.onAny((event, payload) => {
  log(`← ${event} ${JSON.stringify(payload)}`, event === "serverError" ? "refusal" : "");
  if (event === "session") {
    state.me = payload.playerId;
    $("#who").textContent = `you are ${payload.playerId}`;
    $("#who").dataset.player = payload.playerId;
  } else if (event === "matchFound") {
    enter(payload.roomId);
  } else if (event === "resumed") {
    enter(payload.roomId);
    showView(payload);
  } else if (event === "view" && payload.roomId === state.room) {
    showView(payload);
  } else if (event === "gameOver" && payload.roomId === state.room) {
    const won = payload.winners.includes(state.me);
    say(payload.winners.length === 0 ? "Game over: a draw." : won ? "Game over: you won." : `Game over: ${payload.winners.join(", ")} won.`, won ? "ok" : "");
    $("#turn").textContent = "over";
  } else if (event === "waiting") {
    say("Waiting for other players…");
  }
});

function enter(room) {
  state.room = room;
  $("#send").disabled = false;
  $("#view").dataset.room = room;
  say(`In match ${room}.`);
}

function showView(update) {
  $("#view").textContent = JSON.stringify(update.view, null, 2);
  $("#turn").textContent = `turn ${update.turn}`;
  $("#view").dataset.turn = update.turn;
}

async function loadGames() {
  const answer = await fetch("/rules").then((r) => r.json());
  state.games = answer.games;
  const names = Object.keys(answer.games).filter((g) => answer.games[g].active);
  $("#game").replaceChildren(...names.map((g) => el("option", { value: g }, g)));
  pickGame();
}

function pickGame() {
  const listed = state.games[$("#game").value];
  const description = listed?.description;
  const modes = description?.modes?.map((m) => m.name) ?? [];
  $("#mode").replaceChildren(...(modes.length ? modes : ["default"]).map((m) => el("option", { value: m }, m)));
  if (description) {
    const { min, max } = description.players;
    $("#about").textContent = `${description.name}: ${min === max ? min : `${min} to ${max}`} players; ${listed.bots ? "has bots" : "no bots"}.`;
    $("#seats").min = min;
    $("#seats").max = max;
  }
}

$("#game").addEventListener("change", pickGame);

$("#join").addEventListener("click", async () => {
  const level = Number($("#level").value);
  const join = { level, game: $("#game").value, mode: $("#mode").value };
  if ($("#vs-bot").checked) {
    join.vsBot = true;
    if ($("#seats").value) join.seats = Number($("#seats").value);
  }
  log(`→ joinMatchmaking ${JSON.stringify(join)}`, "sent");
  const answer = await request(socket, "joinMatchmaking", join).catch(() => null);
  if (answer && answer.success === false) say(`${answer.code}: ${answer.error}`, "error");
  else if (typeof answer === "string") enter(answer);
});

$("#leave").addEventListener("click", async () => {
  const answer = await request(socket, "leaveMatchmaking", {});
  say(answer.left ? "You left the queue." : "You were not waiting.");
});

$("#send").addEventListener("click", async () => {
  let action;
  try {
    action = JSON.parse($("#action").value);
  } catch (error) {
    $("#answer").textContent = `not JSON: ${error.message}`;
    $("#answer").className = "status error";
    return;
  }
  log(`→ submitAction ${JSON.stringify({ roomId: state.room, action })}`, "sent");
  const answer = await request(socket, "submitAction", { roomId: state.room, action }).catch(() => null);
  if (!answer) {
    $("#answer").textContent = "no answer from the server";
  } else if (answer.success) {
    $("#answer").textContent = `accepted, turn ${answer.turn}`;
    $("#answer").className = "status ok";
  } else {
    $("#answer").textContent = `${answer.code}: ${answer.error}`;
    $("#answer").className = "status error";
    $("#answer").dataset.code = answer.code;
    log(`refused ${answer.code}: ${answer.error}`, "refusal");
  }
});

loadGames().catch((error) => say(`GET /rules failed: ${error.message}`, "error"));
