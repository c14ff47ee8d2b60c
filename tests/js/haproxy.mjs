// Two wizard-battle matches played by the official socket.io-client through a load balancer,
// while the test behind it drains one instance and kills another.
// Usage: node haproxy.mjs <balancer url>
//
// Players: A polls first and upgrades, B is websocket-only, C only ever polls (every request
// must reach its instance: sticky sessions), D is websocket-only. A and B play one match, C and
// D another. Each client reconnects by itself and resumes with its token (`auth` is read again
// at every connection).
//
// Talks to the test on stdin/stdout, one JSON line each:
//   -> {"step":"matched","players":{A:{playerId,socketId},...}}   <- "go" (after a drain)
//   -> {"step":"resumed","players":{...}}                         <- "go" (after a kill)
//   -> {"step":"done","disconnections":{A:n,...}}
// Exits 1 with the failed check on stderr.

import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [url] = process.argv.slice(2);
const TIMEOUT_MS = 20000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const kinds = {
  A: { transports: ["polling", "websocket"] },
  B: { transports: ["websocket"] },
  C: { transports: ["polling"], upgrade: false },
  D: { transports: ["websocket"] },
};

function player(name) {
  const p = { name, seen: [], session: null, disconnections: 0 };
  p.socket = io(url, {
    ...kinds[name],
    // Node keeps the balancer's cookie only with this (browsers do on the same origin).
    withCredentials: true,
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    auth: (cb) =>
      cb(p.session ? { playerId: p.session.playerId, resumeToken: p.session.resumeToken } : {}),
  });
  // Listeners first: nothing that arrives while we wait is missed.
  p.socket.onAny((event, ...args) => {
    if (event === "session") p.session = args[0];
    p.seen.push({ event, data: args[0] });
  });
  p.socket.on("disconnect", () => {
    p.disconnections += 1;
    p.seen.push({ event: "(disconnected)" });
  });
  return p;
}

function next(p, event, check = () => true, after = 0) {
  return new Promise((resolve, reject) => {
    const look = () => {
      const found = p.seen.slice(after).find((e) => e.event === event && check(e.data));
      if (found) {
        clearInterval(timer);
        clearTimeout(timeout);
        resolve(found.data);
      }
    };
    const timer = setInterval(look, 10);
    const timeout = setTimeout(() => {
      clearInterval(timer);
      reject(new Error(`${p.name} never got ${event}; saw ${JSON.stringify(p.seen.map((e) => e.event))}`));
    }, TIMEOUT_MS);
    look();
  });
}

const count = (p, event) => p.seen.filter((e) => e.event === event).length;
const settle = (ms = 300) => new Promise((r) => setTimeout(r, ms));
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const ids = (players) =>
  Object.fromEntries(players.map((p) => [p.name, { playerId: p.session.playerId, socketId: p.socket.id }]));

async function heard(expected) {
  const { value } = await lines.next();
  assert.equal(value?.trim(), expected, "the test's answer");
}

/** Where the player stands, from the latest view or resume. */
function position(p) {
  const last = [...p.seen].reverse().find((e) => e.event === "view" || e.event === "resumed");
  return last.data.view.you.position;
}

async function match(first, second, level) {
  assert.equal(await first.socket.timeout(TIMEOUT_MS).emitWithAck("joinMatchmaking", { level }), null);
  const room = await second.socket.timeout(TIMEOUT_MS).emitWithAck("joinMatchmaking", { level });
  assert.equal(typeof room, "string");
  for (const p of [first, second]) {
    await next(p, "matchFound");
    await next(p, "view");
  }
  return room;
}

/** Every player that lost its connection since `marks` is back and resumed in its match. */
async function allBack(players, marks) {
  for (const p of players) {
    const since = p.seen.findIndex((e, i) => i >= marks[p.name] && e.event === "(disconnected)");
    if (since >= 0) await next(p, "resumed", () => true, since);
    assert.ok(p.socket.connected, `${p.name} is connected`);
  }
}

async function act(p, room, action) {
  const ack = await p.socket.timeout(TIMEOUT_MS).emitWithAck("submitAction", { roomId: room, action });
  assert.equal(ack.success, true, `${p.name}: ${JSON.stringify(ack)}`);
}

async function main() {
  const [A, B, C, D] = ["A", "B", "C", "D"].map(player);
  const players = [A, B, C, D];
  for (const p of players) await next(p, "session");
  const rooms = [await match(A, B, 1), await match(C, D, 2)];
  const pairs = [[A, B], [C, D]];

  let marks = Object.fromEntries(players.map((p) => [p.name, p.seen.length]));
  say({ step: "matched", players: ids(players) });
  await heard("go"); // one instance was drained (SIGTERM)
  await allBack(players, marks);
  await settle();
  // Round 1: everyone stays where it is.
  for (const [i, [x, y]] of pairs.entries()) {
    for (const p of [x, y]) await act(p, rooms[i], { spell: "teleport", target: position(p) });
  }
  for (const p of players) await next(p, "view", (v) => v.turn === 2);

  marks = Object.fromEntries(players.map((p) => [p.name, p.seen.length]));
  say({ step: "resumed", players: ids(players) });
  await heard("go"); // one instance was killed (SIGKILL)
  await allBack(players, marks);
  await settle();
  // Round 2: each strikes the other: draws.
  for (const [i, [x, y]] of pairs.entries()) {
    await act(x, rooms[i], { spell: "lightning", target: position(y) });
    await act(y, rooms[i], { spell: "lightning", target: position(x) });
  }
  for (const p of players) await next(p, "gameOver");
  await settle();

  for (const p of players) {
    assert.equal(count(p, "matchFound"), 1, `${p.name}: one matchFound`);
    assert.equal(count(p, "gameOver"), 1, `${p.name}: one gameOver`);
    const rounds = p.seen.filter((e) => e.event === "gameEvent" && e.data.event?.type === "roundResolved");
    assert.equal(rounds.length, 2, `${p.name} saw each round resolved once`);
  }
  say({ step: "done", disconnections: Object.fromEntries(players.map((p) => [p.name, p.disconnections])) });
  for (const p of players) p.socket.disconnect();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`FAILED: ${error.stack ?? error}`);
    process.exit(1);
  },
);
