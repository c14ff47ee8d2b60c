// The playground plays a match by typed JSON: two pages join wizard battle from the game list,
// one action is refused with its code, then a lightning ends it.
// Usage: node browser/playground.mjs <server url> <screenshot folder>
import { launch, open, check, text, run } from "./browser.mjs";

const [url, shots] = process.argv.slice(2);

async function joined(page) {
  await page.waitForSelector("#who[data-player]");
  await page.waitForSelector('#game option[value="wizard-battle"]');
  await page.select("#game", "wizard-battle");
  await page.click("#join");
}

async function view(page) {
  await page.waitForSelector("#view[data-room]");
  await page.waitForFunction(() => document.querySelector("#view").textContent.includes('"you"'));
  return JSON.parse(await text(page, "#view"));
}

async function send(page, action) {
  await page.$eval("#action", (area) => { area.value = ""; });
  await page.type("#action", JSON.stringify(action));
  await page.click("#send");
}

run(async () => {
  const browser = await launch();
  const ann = await open(browser, `${url}/play`);
  const bob = await open(browser, `${url}/play`);
  const games = await ann.$$eval("#game option", (options) => options.map((o) => o.value));
  check(games.includes("wizard-battle") && games.includes("liars-dice"), `every game is offered: ${games}`);
  await ann.select("#game", "liars-dice");
  await ann.waitForFunction(() => document.querySelector("#about").textContent.includes("2 to 6 players"));
  const modes = await ann.$$eval("#mode option", (options) => options.map((o) => o.value));
  check(modes.includes("classic") && modes.includes("quick"), `the game's modes are offered: ${modes}`);

  await joined(ann);
  await joined(bob);
  const annView = await view(ann);
  const bobView = await view(bob);
  check(annView.you.id !== bobView.you.id, "two players");
  check((await text(ann, "#log")).includes("matchFound"), "events are logged as they arrive");

  await send(ann, { spell: "abracadabra" });
  await ann.waitForSelector("#answer[data-code]");
  check((await ann.$eval("#answer", (n) => n.dataset.code)) === "unknown_spell", "a refusal shows its code");
  check((await text(ann, "#log")).includes("refused unknown_spell"), "the refusal is in the log");

  const bobAt = bobView.you.position;
  await send(ann, { spell: "lightning", target: bobAt });
  await ann.waitForFunction(() => document.querySelector("#answer").textContent.startsWith("accepted"));
  await ann.screenshot({ path: `${shots}/playground.png` });
  await send(bob, { spell: "lightning", target: bobAt });

  await ann.waitForFunction(() => document.querySelector("#status").textContent.includes("you won"));
  await bob.waitForFunction(() => document.querySelector("#status").textContent.includes("won"));
  check((await text(ann, "#log")).includes("gameOver"), "gameOver arrived");
  await browser.close();
});
