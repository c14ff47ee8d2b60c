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
