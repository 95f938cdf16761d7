// Loads pages of `host serve` in Debian's headless Chromium and reports, as
// one JSON line per page, how long the page took to finish rendering (the
// page sets body[data-ready] when its scripts are done), what it contains,
// and any script errors. Optionally saves a screenshot.
//
// usage: node page.mjs URL [URL...] [--screenshot FILE [--clip HEIGHT]] [--repeat N]
//   --clip: the screenshot's top HEIGHT pixels instead of the whole page
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
let shot = null, repeat = 1, clip = null;
const urls = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--screenshot") shot = args[++i];
  else if (args[i] === "--repeat") repeat = Number(args[++i]);
  else if (args[i] === "--clip") clip = Number(args[++i]);
  else urls.push(args[i]);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 2000 } });
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  for (const url of urls) {
    const times = [];
    for (let r = 0; r < repeat; r++) {
      await page.goto("about:blank");
      const t = Date.now();
      await page.goto(url);
      await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
      times.push(Date.now() - t);
    }
    const info = await page.evaluate(() => ({
      title: document.querySelector("h1")?.textContent || "",
      runsTable: !!document.querySelector("#runs-table"),
      runRows: document.querySelectorAll("#runs-table tbody tr").length,
      charts: document.querySelectorAll("svg.chart").length,
      lines: document.querySelectorAll("svg.chart polyline").length,
      bars: document.querySelectorAll("svg.chart rect").length,
      tables: [...document.querySelectorAll("h2")].map(h => h.textContent),
      ids: [...document.querySelectorAll("[id]")].map(e => e.id),
      error: document.querySelector(".error")?.textContent || null,
    }));
    console.log(JSON.stringify({ url, ms: times, errors, ...info }));
  }
  if (shot) {
    const options = clip ? { clip: { x: 0, y: 0, width: 1400, height: clip } } : { fullPage: true };
    await page.screenshot({ path: shot, ...options });
  }
} finally {
  await browser.close();
}
