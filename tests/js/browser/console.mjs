// The console, on the first of two instances sharing Redis: nothing without the admin token;
// with it, a match running across the instances, its stored state, and an upload that becomes
// the active version on the second instance.
// Usage: node browser/console.mjs <first url> <second url> <admin token> <module to upload> <screenshot folder>
import { io } from "socket.io-client";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { launch, open, check, text, run } from "./browser.mjs";

const [first, second, token, upload, shots] = process.argv.slice(2);

function player(url) {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on("session", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

async function matchAcross(level) {
  const ann = await player(first);
  const bob = await player(second);
  const found = new Promise((resolve) => ann.on("matchFound", resolve));
  await ann.timeout(10_000).emitWithAck("joinMatchmaking", { level });
  await bob.timeout(10_000).emitWithAck("joinMatchmaking", { level });
  return { room: (await found).roomId, sockets: [ann, bob] };
}

async function activeOnSecond(version) {
  const deadline = Date.now() + 20_000;
  let active;
  while (Date.now() < deadline) {
    active = (await (await fetch(`${second}/rules`)).json()).games["wizard-battle"].active;
    if (active === version) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  check(false, `version ${version} is active on the second instance (it runs ${active})`);
}

async function refusedWith(page, typed) {
  await page.$eval("#token", (input) => { input.value = ""; });
  if (typed) await page.type("#token", typed);
  await page.click('#login button[type="submit"]');
  await page.waitForFunction(() => document.querySelector("#auth").textContent.includes("needs the admin token"));
  check(await page.$eval("#data", (node) => node.classList.contains("hidden")), "nothing is shown without the token");
}

run(async () => {
  const { room, sockets } = await matchAcross(3);
  const browser = await launch();
  const page = await open(browser, `${first}/console`);

  await page.waitForFunction(() => document.querySelector("#auth").textContent.includes("needs the admin token"));
  await refusedWith(page, "not-the-token");
  await refusedWith(page, "");
  check(!(await page.content()).includes(room), "no match leaks without the token");

  await page.type("#token", token);
  await page.click('#login button[type="submit"]');
  await page.waitForSelector(`#matches tr[data-room="${room}"]`);
  const instances = await page.$$eval("#instances tr[data-instance]", (rows) => rows.map((r) => r.dataset.instance));
  check(instances.length === 2, `both instances are listed: ${instances}`);
  check((await text(page, `#matches tr[data-room="${room}"]`)).includes("wizard-battle"), "the match shows its game");
  check((await text(page, "#rules")).includes("optimized"), "each instance's code tier is shown");

  await page.click(`#matches tr[data-room="${room}"]`);
  await page.waitForFunction(() => document.querySelector("#stored-state").textContent.includes("gameData"));
  const stored = JSON.parse(await text(page, "#stored-state"));
  check(stored.roomId === room && stored.gameData.game.wizards.length === 2, "the stored state is the match's, rules state included");
  await page.screenshot({ path: `${shots}/console.png`, fullPage: true });

  // It keeps itself up to date: a match started now shows up without a reload.
  const later = await matchAcross(5);
  await page.waitForSelector(`#matches tr[data-room="${later.room}"]`);

  // A swap from the console reaches the other instance...
  const original = stored.module;
  const version = createHash("sha256").update(readFileSync(upload)).digest("hex");
  const picker = await page.$('input.upload[data-game="wizard-battle"]');
  await picker.uploadFile(upload);
  await page.waitForFunction(() => document.querySelector("#rules-status").textContent.includes("is active on every instance"));
  await activeOnSecond(version);
  await page.waitForSelector(`#rules tr[data-version="${version}"] .tag.active`);
  // ...and so does a rollback to the version before.
  await page.click(`#rules tr[data-version="${original}"] button.activate`);
  await page.waitForFunction(() => document.querySelector("#rules-status").textContent.includes("is active again"));
  await activeOnSecond(original);
  await page.waitForSelector(`#rules tr[data-version="${original}"] .tag.active`);
  for (const socket of [...sockets, ...later.sockets]) socket.close();
  await browser.close();
});
