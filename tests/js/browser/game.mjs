// Two pages play a whole wizard battle through the page's own controls; one reloads mid-match
// and resumes; a third plays the host's bot. Usage: node browser/game.mjs <server url> <screenshot folder>
import { launch, open, check, text, run } from "./browser.mjs";

const [url, shots] = process.argv.slice(2);

async function me(page) {
  await page.waitForSelector("#who[data-player]");
  return page.$eval("#who", (node) => node.dataset.player);
}

async function position(page) {
  await page.waitForSelector("#board .cell.me");
  return page.$eval("#board .cell.me", (cell) => ({ x: Number(cell.dataset.x), y: Number(cell.dataset.y) }));
}

async function castAt(page, spell, cell) {
  await page.click(`.spell[data-spell="${spell}"]:not([disabled])`);
  await page.click(`#board .cell[data-x="${cell.x}"][data-y="${cell.y}"]`);
  await page.waitForSelector("#cast:not([disabled])");
}

run(async () => {
  const browser = await launch();
  const ann = await open(browser, url);
  const bob = await open(browser, url);
  const annId = await me(ann);
  const bobId = await me(bob);
  check(annId !== bobId, "two pages are two players");

  await ann.click("#find");
  await ann.waitForFunction(() => document.querySelector("#status").textContent.includes("Waiting"));
  await bob.click("#find");
  await ann.waitForSelector("#match:not(.hidden) #board .cell");
  await bob.waitForSelector("#match:not(.hidden) #board .cell");
  const room = await ann.$eval("#match", (node) => node.dataset.room);
  check(room === (await bob.$eval("#match", (node) => node.dataset.room)), "both pages are in one match");
  check((await text(ann, "#round")).includes("Round 1"), "the round is shown");
  await ann.waitForFunction(() => /^\d+ s$/.test(document.querySelector("#timer").textContent));
  const hpRows = await ann.$$eval("#wizards .hp", (rows) => rows.map((row) => row.dataset.wizard));
  check(hpRows.includes(annId) && hpRows.includes(bobId), `everyone's health is shown: ${hpRows}`);
  const spells = await ann.$$eval(".spell", (buttons) => buttons.map((b) => [b.dataset.spell, b.textContent]));
  check(spells.some(([spell, words]) => spell === "lightning" && words.includes("ready") && words.includes("reaches")),
    `spells show their cooldown and reach: ${JSON.stringify(spells)}`);

  // Ann reloads mid-match: the same player, in the same match, where she stood.
  const before = await position(ann);
  await ann.reload({ waitUntil: "load" });
  check((await me(ann)) === annId, "the reloaded page is the same player");
  await ann.waitForSelector("#match:not(.hidden) #board .cell.me");
  check((await ann.$eval("#match", (node) => node.dataset.room)) === room, "the reloaded page resumed its match");
  const after = await position(ann);
  check(before.x === after.x && before.y === after.y, "the resumed view is the same");
  await ann.waitForFunction(() => document.querySelector("#log").textContent.includes("Back in match"));

  // Round 1: Ann's lightning strikes where Bob stands; Bob's own lands on himself, harmlessly.
  const bobAt = await position(bob);
  await castAt(ann, "lightning", bobAt);
  await ann.screenshot({ path: `${shots}/game.png` });
  await ann.click("#cast");
  await ann.waitForFunction(() => document.querySelector("#cast-status").textContent.includes("You cast lightning"));
  await castAt(bob, "lightning", bobAt);
  await bob.click("#cast");

  await ann.waitForSelector("#result[data-outcome]");
  await bob.waitForSelector("#result[data-outcome]");
  check((await ann.$eval("#result", (n) => n.dataset.outcome)) === "won", "Ann won");
  check((await bob.$eval("#result", (n) => n.dataset.outcome)) === "lost", "Bob lost");
  const story = await text(ann, "#log");
  check(story.includes("Round 1") && story.includes("100 damage") && story.includes("fell"), `the log tells the round: ${story}`);
  check((await bob.$eval(`#wizards .hp[data-wizard="${bobId}"] [data-hp]`, (n) => n.dataset.hp)) === "0", "Bob's health reads 0");
  await ann.screenshot({ path: `${shots}/game-over.png` });

  // A third page plays the host's bot, which casts in the first round without waiting.
  const cleo = await open(browser, url);
  await me(cleo);
  await cleo.click("#vs-bot");
  await cleo.waitForSelector("#match:not(.hidden) #board .cell.me");
  await cleo.waitForFunction(() => document.querySelector("#wizards").textContent.includes("the bot"));
  await cleo.waitForFunction(() => document.querySelector("#log").textContent.includes("cast a spell"));
  await browser.close();
});
