// Debian's Chromium, headless, driven by puppeteer-core (which downloads no browser). The flags
// keep it from reaching out to a network it does not have.
import puppeteer from "puppeteer-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function launch() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), "gamehost-chromium-")),
    defaultViewport: { width: 1280, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

/// A page whose console errors and failed requests end the run: a page that "works" while its
/// script throws is not working.
export async function open(browser, url) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (error) => fail(`page error on ${url}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") console.error(`console error on ${url}: ${message.text()}`);
  });
  await page.goto(url, { waitUntil: "load" });
  return page;
}

export function fail(why) {
  console.error(`FAILED: ${why}`);
  process.exit(1);
}

export function check(condition, why) {
  if (!condition) fail(why);
}

/// The text of the first element matching `selector`.
export async function text(page, selector) {
  return page.$eval(selector, (node) => node.textContent);
}

/// Runs `main`, then says ok; any throw fails the run with its stack.
export function run(main) {
  const timer = setTimeout(() => fail("timed out after 150 s"), 150_000);
  main()
    .then(() => {
      clearTimeout(timer);
      console.log("browser scenario: ok");
      process.exit(0);
    })
    .catch((error) => fail(error.stack || String(error)));
}
