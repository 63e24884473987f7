// Drives Debian's Chromium (playwright-core) through reflow's progress page while a real run
// goes on, and watches its pipeline graph. Usage: node dag.mjs URL WIDE_PNG NARROW_PNG
// Prints one JSON line per change of the drawn step states ({"graph/step": state}), then,
// once the page shows the run ended and no drawn step is running or pending, screenshots at
// 1280×800 and at a phone's 390×844 and a last line: DONE {errors, focusable}.
import { chromium } from "playwright-core";

const [url, wide, narrow] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  const states = () => page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll("#dag .step[data-state]")].map((n) =>
      [`${n.dataset.graph}/${n.dataset.step}`, n.dataset.state])));
  let last = "";
  const deadline = Date.now() + 240000;
  for (;;) {
    const now = await states();
    const text = JSON.stringify(now);
    if (text !== last && Object.keys(now).length) { console.log(text); last = text; }
    const ended = await page.evaluate(() => document.getElementById("status").textContent === "ended");
    const settled = Object.values(now).every((v) => !["running", "pending"].includes(v));
    if (ended && Object.keys(now).length && settled) break;
    if (Date.now() > deadline) { console.log("TIMEOUT"); break; }
    await page.waitForTimeout(150);
  }
  await page.screenshot({ path: wide, fullPage: true });
  // Keyboard: the steps take focus in order.
  const focusable = await page.evaluate(() => document.querySelectorAll("#dag .step[tabindex='0']").length);
  await page.setViewportSize({ width: 390, height: 844 });
  // Readable on a phone: the graph keeps its size and scrolls inside its box; the page does
  // not scroll sideways.
  const phone = await page.evaluate(() => {
    const svg = document.querySelector("#dag svg");
    // The page's own blocks that reach past the screen (what makes it scroll sideways).
    const wide = [...document.body.children]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible")
      .map((e) => `${e.tagName}${e.id ? "#" + e.id : ""}:${Math.round(e.getBoundingClientRect().right)}/${e.scrollWidth}`);
    return { svg: svg ? Math.round(svg.getBoundingClientRect().width) : 0,
             page: document.documentElement.scrollWidth, window: window.innerWidth, wide };
  });
  const fits = phone.svg >= 560 && phone.page <= phone.window;
  await page.screenshot({ path: narrow, fullPage: true });
  console.log("DONE " + JSON.stringify({ errors, focusable, fits, phone }));
} finally {
  await browser.close();
}
