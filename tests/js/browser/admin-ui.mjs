// The stock Socket.IO Admin UI, served by the first of two instances: a wrong password is
// refused with the UI's own message; logged in, it lists both instances and the sockets of
// both; its disconnect action disconnects a player on the other instance.
// Usage: node browser/admin-ui.mjs <first url> <second url> <admin token> <screenshot folder>
import { io } from "socket.io-client";
import { launch, open, check, run } from "./browser.mjs";

const [first, second, token, shots] = process.argv.slice(2);

function player(url) {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on("session", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

async function logIn(page, password) {
  await page.waitForSelector(".v-dialog--active input");
  const [server, user, secret] = await page.$$(".v-dialog--active input");
  for (const [input, value] of [[server, first], [user, "admin"], [secret, password]]) {
    await input.click({ clickCount: 3 });
    await page.keyboard.press("Backspace");
    await input.type(value);
  }
  await page.click('.v-dialog--active button[type="submit"]');
}

const bodyText = (page) => page.evaluate(() => document.body.innerText);

async function until(page, what, condition) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (condition(await bodyText(page))) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  check(false, `${what}; the page says:\n${await bodyText(page)}`);
}

run(async () => {
  const ann = await player(first);
  const bob = await player(second);
  const bobGone = new Promise((resolve) => bob.on("disconnect", resolve));
  const instances = await Promise.all(
    [first, second].map(async (url) => (await (await fetch(`${url}/health`)).json()).instanceId),
  );

  const browser = await launch();
  const page = await open(browser, `${first}/admin-ui/`);
  await logIn(page, "not-the-token");
  await until(page, "a wrong password is refused", (words) => words.includes("Invalid credentials"));
  await logIn(page, token);
  await page.waitForSelector(".v-dialog--active", { hidden: true });

  await page.evaluate(() => { location.hash = "#/servers/"; });
  await until(page, "both instances are listed", (words) => instances.every((id) => words.includes(id)));

  await page.evaluate(() => { location.hash = "#/sockets/"; });
  await until(page, "the sockets of both instances are listed", (words) => words.includes(ann.id) && words.includes(bob.id));
  await new Promise((resolve) => setTimeout(resolve, 800)); // the UI's page transition
  await page.screenshot({ path: `${shots}/admin-ui.png` });

  // The protocol itself, as the UI speaks it: join, emit and leave reach a socket on the other
  // instance; a wrong password is refused with exactly "invalid credentials".
  const refused = await new Promise((resolve) => {
    const wrong = io(`${first}/admin`, { auth: { username: "admin", password: "nope" }, transports: ["websocket"], reconnection: false });
    wrong.on("connect", () => resolve("connected"));
    wrong.on("connect_error", (error) => resolve(error.message));
  });
  check(refused === "invalid credentials", `a wrong password: ${refused}`);
  // Listeners go on before the connection opens: what the server sends right behind its
  // connect may otherwise arrive before they do.
  const adminClient = (on = {}) => new Promise((resolve, reject) => {
    const socket = io(`${first}/admin`, { auth: { username: "admin", password: token }, transports: ["websocket"], reconnection: false });
    for (const [event, handler] of Object.entries(on)) socket.on(event, handler);
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
  });
  // The rooms of a socket on the other instance, as a newly logged-in UI is told them (none
  // if it is not told within 5 s).
  const roomsOf = async (id) => {
    let ui;
    const rooms = await new Promise((resolve) => {
      setTimeout(() => resolve([]), 5_000);
      adminClient({ socket_connected: (socket) => { if (socket.id === id) resolve(socket.rooms); } })
        .then((socket) => { ui = socket; });
    });
    ui?.close();
    return rooms;
  };
  const eventually = async (what, condition) => {
    const deadline = Date.now() + 15_000;
    while (!(await condition())) {
      check(Date.now() < deadline, what);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const admin = await adminClient();
  const heard = [];
  bob.on("fromAdmin", (payload) => heard.push(payload.n));
  admin.emit("join", "/", "vip", bob.id);
  await eventually("the UI's join reaches the other instance", async () => (await roomsOf(bob.id)).includes("vip"));
  admin.emit("emit", "/", "vip", "fromAdmin", { n: 2 });
  await eventually("the UI's emit reaches the room", async () => heard.includes(2));
  admin.emit("leave", "/", "vip", bob.id);
  await eventually("the UI's leave reaches the other instance", async () => !(await roomsOf(bob.id)).includes("vip"));
  admin.emit("emit", "/", "vip", "fromAdmin", { n: 3 });
  admin.emit("emit", "/", bob.id, "fromAdmin", { n: 4 });
  await eventually("an emit to the socket's own room reaches it", async () => heard.includes(4));
  check(!heard.includes(3), `nothing reaches a room after leaving it: ${JSON.stringify(heard)}`);
  admin.close();

  const row = await page.waitForSelector(`xpath///tr[td[contains(., "${bob.id}")]]`);
  const disconnect = await row.$("button");
  await disconnect.click();
  const reason = await Promise.race([bobGone, new Promise((resolve) => setTimeout(() => resolve("still connected"), 10_000))]);
  check(reason === "io server disconnect", `the UI's disconnect disconnected the player: ${reason}`);
  check(ann.connected, "the other player stays connected");
  await until(page, "the disconnected socket leaves the list", (words) => !words.includes(bob.id));
  ann.close();
  await browser.close();
});
