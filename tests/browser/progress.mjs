// Drives Debian's Chromium (playwright-core, never a downloaded browser) through reflow's
// progress page. Usage: node progress.mjs URL SCREENSHOT
// Prints READY once the page shows the replayed state, waits for a line on stdin (the test
// publishes live events meanwhile), waits for those to appear, takes the screenshot, and
// prints one JSON line with what the page shows.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  // Replayed: the duration and the stored step states.
  await page.waitForFunction(() => document.getElementById("duration").textContent !== "–"
    && document.querySelectorAll("#steps tbody tr").length >= 2, null, { timeout: 15000 });
  const replayed = await page.evaluate(() => ({
    duration: document.getElementById("duration").textContent,
    steps: document.querySelectorAll("#steps tbody tr").length,
    version: document.getElementById("version").textContent,
  }));
  console.log("READY " + JSON.stringify(replayed));
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once("line", resolve));
  rl.close();
  // Live: the title, a topic and the step that completed.
  await page.waitForFunction(() => document.getElementById("title").textContent !== "Processing…"
    && document.querySelectorAll("#topics li").length > 0
    && document.querySelector('#steps tr[data-step="2"]')?.className === "completed",
    null, { timeout: 15000 });
  await page.screenshot({ path: shot, fullPage: true });
  const seen = await page.evaluate(() => ({
    title: document.getElementById("title").textContent,
    status: document.getElementById("status").textContent,
    duration: document.getElementById("duration").textContent,
    overall: document.getElementById("overall-text").textContent,
    steps: [...document.querySelectorAll("#steps tbody tr")].map((tr) =>
      [...tr.cells].map((c) => c.textContent)),
    topics: [...document.querySelectorAll("#topics li")].map((li) => li.textContent),
    waveform: document.querySelectorAll("#waveform rect").length,
    short: document.getElementById("short").textContent,
  }));
  console.log(JSON.stringify({ ...seen, errors }));
} finally {
  await browser.close();
}
