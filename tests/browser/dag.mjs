// Drives Debian's Chromium (playwright-core) through reflow's progress page while a real run
// goes on, and watches its pipeline graph. Usage: node dag.mjs URL WIDE_PNG NARROW_PNG
// Prints one JSON line per change of the drawn steps ({"graph/step": {state, attempt, error,
// done, critical, ms}}), then, once the page shows the run ended and no drawn step is
// running, retrying or pending: opens the members of TrackProcessing/transcribe_track with the
// keyboard, screenshots at 1280×800 and at a phone's 390×844, and a last line:
// DONE {errors, focusable, members, expanded, fits, phone, reading}.
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
  const nodes = () => page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll("#dag .step[data-state]")].map((n) => [
      `${n.dataset.graph}/${n.dataset.step}`,
      { state: n.dataset.state, attempt: n.dataset.attempt || null, error: n.dataset.error || null,
        done: n.dataset.done || null, critical: n.dataset.critical === "true",
        ms: n.dataset.durationMs ? Number(n.dataset.durationMs) : null,
        status: (n.querySelector(".status") || {}).textContent || null },
    ])));
  let last = "";
  const deadline = Date.now() + 240000;
  for (;;) {
    const now = await nodes();
    const text = JSON.stringify(now);
    if (text !== last && Object.keys(now).length) { console.log(text); last = text; }
    const ended = await page.evaluate(() => document.getElementById("status").textContent === "ended");
    const settled = Object.values(now).every((v) => !["running", "retrying", "pending"].includes(v.state));
    if (ended && Object.keys(now).length && settled) break;
    if (Date.now() > deadline) { console.log("TIMEOUT"); break; }
    await page.waitForTimeout(150);
  }
  // Let the last redraw (the one after the run ended) land before reading the final graph.
  await page.waitForTimeout(1700);
  console.log(JSON.stringify(await nodes()));
  // Keyboard: the steps take focus in order; Enter on a fan-out lists its members.
  const focusable = await page.evaluate(() => document.querySelectorAll("#dag .step[tabindex='0']").length);
  const fan = '#dag .step[data-graph="TrackProcessing"][data-step="transcribe_track"]';
  await page.focus(fan);
  await page.keyboard.press("Enter");
  const opened = await page.evaluate((sel) => {
    const node = document.querySelector(sel);
    const panel = [...document.querySelectorAll("#dag .members")]
      .find((g) => g.dataset.for === "TrackProcessing/transcribe_track");
    return {
      expanded: node.getAttribute("aria-expanded"),
      visible: panel ? panel.getBoundingClientRect().height > 0 && panel.getAttribute("display") !== "none" : false,
      members: panel ? [...panel.querySelectorAll(".member")].map((m) => ({
        label: m.dataset.member, state: m.dataset.state, text: m.textContent })) : [],
    };
  }, fan);
  // The long summary reads as Markdown renders; the step table names the skipped step.
  const reading = await page.evaluate(() => ({
    headings: [...document.querySelectorAll("#long h3")].map((h) => h.textContent),
    bold: document.querySelectorAll("#long strong").length,
    raw: /(^|\s)#|\*\*/.test(document.getElementById("long").textContent),
    table: Object.fromEntries([...document.querySelectorAll("#steps tbody tr")]
      .map((tr) => [tr.cells[1].textContent, tr.cells[2].textContent])),
  }));
  await page.screenshot({ path: wide, fullPage: true });
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
  console.log("DONE " + JSON.stringify({ errors, focusable, fits, phone, reading, ...opened }));
} finally {
  await browser.close();
}
