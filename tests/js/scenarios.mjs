// Scenarios played by the official socket.io-client against a running gamehost.
// Usage: node scenarios.mjs <server url> <original|authoritative>
// Exits 0 when every check passed; otherwise prints what failed and exits 1.
// The Rust integration tests (tests/it/js_client.rs) start a server and run these.

import assert from "node:assert/strict";
import { io } from "socket.io-client";

const [url, scenario] = process.argv.slice(2);
const TIMEOUT_MS = 5000;

/** A client that records every event it receives, in order. */
function client(name) {
  const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  const seen = [];
  socket.onAny((event, ...args) => seen.push({ event, data: args[0] }));
  return { name, socket, seen };
}

/** Resolves with the data of the `n`th `event` this client receives (1-based). */
function next(c, event, n = 1) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = c.seen.filter((e) => e.event === event);
      if (found.length >= n) {
        clearInterval(timer);
        clearTimeout(timeout);
        resolve(found[n - 1].data);
      }
    };
    const timer = setInterval(check, 5);
    const timeout = setTimeout(() => {
      clearInterval(timer);
      reject(new Error(`${c.name} never got ${event} #${n}; saw ${JSON.stringify(c.seen.map((e) => e.event))}`));
    }, TIMEOUT_MS);
    check();
  });
}

const count = (c, event) => c.seen.filter((e) => e.event === event).length;
const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

async function connected(c) {
  const session = await next(c, "session");
  assert.equal(typeof session.playerId, "string");
  assert.match(session.resumeToken, /^[0-9a-f]{64}$/);
  assert.equal(session.playerId, c.socket.id, "without auth a player is known by its socket id");
  return session;
}

/** Two clients queued at one level until matched; returns [first, second, roomId]. */
async function matchedPair(level) {
  const a = client("a");
  const b = client("b");
  await Promise.all([connected(a), connected(b)]);
  const ackA = await a.socket.timeout(TIMEOUT_MS).emitWithAck("joinMatchmaking", { level });
  assert.equal(ackA, null, "nobody waiting yet: acknowledged with null");
  assert.deepEqual(await next(a, "waiting"), { message: "Waiting for a match..." });
  const roomId = await b.socket.timeout(TIMEOUT_MS).emitWithAck("joinMatchmaking", { level });
  assert.equal(typeof roomId, "string", "matched at once: acknowledged with the roomId");
  for (const c of [a, b]) {
    const found = await next(c, "matchFound");
    assert.equal(found.roomId, roomId);
    const ids = [a.socket.id, b.socket.id].sort();
    assert.deepEqual(found.players, ids.map((id) => ({ id, level })), "players sorted by id");
  }
  return [a, b, roomId];
}

async function original() {
  const [a, b, roomId] = await matchedPair(3);

  a.socket.emit("gameMessage", { roomId, message: { hello: "there" } });
  for (const c of [a, b]) {
    const relayed = await next(c, "gameMessage");
    assert.deepEqual(relayed, { roomId, sender: a.socket.id, message: { hello: "there" } });
  }

  a.socket.emit("updatePlayerState", { roomId, playerId: a.socket.id, state: { hp: 42 } });
  await next(b, "playerStateUpdated");
  assert.deepEqual(await next(b, "playerStateUpdated"), { playerId: a.socket.id, state: { hp: 42 } });
  await settle();
  const forA = a.seen.filter((e) => e.event === "playerStateUpdated").map((e) => e.data);
  assert.equal(forA.length, 2, "the broadcast and the reply");
  assert.ok(forA.some((d) => d.success === true));
  assert.ok(forA.some((d) => d.playerId === a.socket.id));

  // Another player's state may not be touched.
  a.socket.emit("updatePlayerState", { roomId, playerId: b.socket.id, state: { hp: 0 } });
  const refused = await next(a, "playerStateUpdated", 3);
  assert.equal(refused.success, false);
  assert.equal(typeof refused.error, "string");

  a.socket.emit("getGameState", { roomId });
  const { roomId: stateRoom, state } = await next(a, "gameState");
  assert.equal(stateRoom, roomId);
  assert.equal(state.roomId, roomId);
  assert.equal(state.status, "active");
  assert.equal(state.turn, 1);
  assert.equal(typeof state.createdAt, "number");
  assert.equal(typeof state.updatedAt, "number");
  const slotA = state.players.find((p) => p.id === a.socket.id);
  assert.deepEqual(slotA.state, { hp: 42 });
  assert.ok(state.gameData.you, "gameData is the asking player's own view");
  assert.equal(state.gameData.you.id, a.socket.id);
  assert.equal(state.gameData.opponents[0].position, undefined, "never the opponent's position");

  b.socket.disconnect();
  const notice = await next(a, "opponentDisconnected");
  assert.equal(notice.roomId, roomId);
  await settle();
  assert.equal(count(a, "opponentDisconnected"), 1);
  for (const event of ["gameMessage", "matchFound"]) {
    assert.equal(count(a, event), 1, `${event} arrived exactly once`);
  }
  a.socket.disconnect();
  console.log("original events: ok");
}

async function authoritative() {
  const [a, b, roomId] = await matchedPair(1);
  const viewA = (await next(a, "view")).view;
  const viewB = (await next(b, "view")).view;
  assert.equal(viewA.round, 1);
  assert.equal(viewA.opponents[0].position, undefined);

  // Cooperative test players: a tells b where it stands, through the room.
  a.socket.emit("gameMessage", { roomId, message: { at: viewA.you.position } });
  const told = (await next(b, "gameMessage")).message.at;

  const farFromB = farCell(viewB, viewB.you.position);
  const bad = await a.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "meteor" } });
  assert.deepEqual([bad.success, bad.code], [false, "unknown_spell"]);
  const offMap = await a.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "fireball", target: { x: 99, y: 0 } } });
  assert.equal(offMap.code, "off_map");

  const ackA = await a.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "teleport", target: viewA.you.position } });
  assert.deepEqual(ackA, { success: true, turn: 1 });
  const twice = await a.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "fireball", target: farFromB } });
  assert.equal(twice.code, "already_submitted");
  const ackB = await b.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "lightning", target: told } });
  assert.equal(ackB.success, true);

  for (const c of [a, b]) {
    const over = await next(c, "gameOver");
    const { version, ...rest } = over;
    assert.deepEqual(rest, { roomId, winners: [b.socket.id] });
    assert.equal(typeof version, "number", "the version of the change that ended it");
    const resolved = c.seen.filter((e) => e.event === "gameEvent" && e.data.event.type === "roundResolved");
    assert.equal(resolved.length, 1);
    assert.equal(resolved[0].data.event.fallen[0], a.socket.id);
  }
  await settle();
  for (const c of [a, b]) {
    assert.equal(count(c, "gameOver"), 1, "gameOver arrives exactly once");
    for (const e of c.seen.filter((e) => e.event === "view")) {
      assert.equal(e.data.view.you.id, c.socket.id, "a view is only ever the receiver's own");
    }
  }
  const late = await a.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId, action: { spell: "fireball", target: told } });
  assert.equal(late.code, "game_over");

  b.socket.emit("getGameState", { roomId });
  const { state } = await next(b, "gameState");
  assert.equal(state.status, "finished");
  assert.deepEqual(state.winners, [b.socket.id]);
  a.socket.disconnect();
  b.socket.disconnect();
  console.log("authoritative events: ok");
}

/** A cell more than 2 away from `from` (so a fireball there cannot touch it). */
function farCell(view, from) {
  const size = view.map.length;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (Math.abs(x - from.x) + Math.abs(y - from.y) > 2) return { x, y };
    }
  }
  throw new Error("no far cell");
}

const scenarios = { original, authoritative };
try {
  await scenarios[scenario]();
  process.exit(0);
} catch (error) {
  console.error(`${scenario}: ${error.stack ?? error}`);
  process.exit(1);
}
