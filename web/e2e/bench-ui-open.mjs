// The browser half of bench/ui_open.py: opens each case from the worklist and times the
// click to the first painted image, times the same page fetching and decoding the same DICOM
// file (the baseline), and measures frames per second during a window/level drag.
//
// Environment: BASE_URL, CHROMIUM, RAD_USER, RAD_PASSWORD, CASES (JSON list of
// {case_id, instance_id}; the first is the warm-up), DRAGS (how many), DRAG_MS (each one),
// OUT (the JSON result file), ARTIFACTS (screenshots).
//
// Open: in the page, a MutationObserver is armed, performance.now() is read and the case's
// "Open case <id8>" link in the worklist is clicked (an in-app navigation, as a user's
// click); the time stops when the radiograph viewport's data-state becomes "ready" (the
// viewer sets it after the first render that shows the image).
//
// Baseline: in the same page, fetch() of GET /api/cases/{id}/instances/{iid}/file with the
// bearer token, then what the Cornerstone DICOM image loader does for an uncompressed
// frame, on the main thread with the dicom-parser it uses: parseDicom, a typed-array copy of
// the PixelData frame, and the min/max scan. The browser HTTP cache is off (CDP
// Network.setCacheDisabled) so neither side gets the bytes from a cache; the two are run in
// alternating order per case so a warm server-side file cache favours neither.
//
// Drag, two ways, each DRAG_MS long, fps = the viewport's data-renders increase over the
// elapsed time: (1) Chromium's real input path: right button down on the image
// (window/level), then CDP mouse moves as fast as Chromium takes them (each returns once the
// renderer has handled it: input and rendering alternate, so this is the conservative
// figure); (2) inside the page: one synthetic mousemove per animation frame, as a mouse
// reporting at the display rate (at most 60 fps).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { BASE_URL, env, log, openBrowser, short, signIn, waitViewportReady } from "./lib.mjs";

const require = createRequire(import.meta.url);
const cases = JSON.parse(env("CASES"));
const drags = Number(process.env.DRAGS ?? 3);
const dragMs = Number(process.env.DRAG_MS ?? 2000);
const dicomParserSource = readFileSync(require.resolve("dicom-parser/dist/dicomParser.min.js"), "utf8");

async function accessToken() {
  const response = await fetch(`${BASE_URL}/api/auth/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "password", username: env("RAD_USER"), password: env("RAD_PASSWORD") }),
  });
  if (!response.ok) throw new Error(`token: ${response.status} ${await response.text()}`);
  return (await response.json()).access_token;
}

async function showWorklist(page, caseId) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Worklist" }).click();
  await page.getByRole("link", { name: `Open case ${short(caseId)}` }).waitFor();
}

/** Click → data-state="ready", measured inside the page (ms). */
async function timeOpen(page, caseId) {
  await showWorklist(page, caseId);
  const timing = await page.evaluate(
    ({ label }) =>
      new Promise((resolve, reject) => {
        const ready = () => document.querySelector('[data-testid="radiograph-viewport"][data-state="ready"]');
        const failed = () => document.querySelector('[data-testid="radiograph-viewport"][data-state="error"]');
        const link = document.querySelector(`a[aria-label="${label}"]`);
        if (!link) return reject(new Error(`no link ${label}`));
        let t0 = 0;
        const observer = new MutationObserver(() => {
          if (ready()) {
            const t1 = performance.now();
            observer.disconnect();
            // Where the time went: the case JSON and the DICOM file requests of this open
            // (Resource Timing, relative to the click).
            const phase = (pattern) => {
              const entry = performance
                .getEntriesByType("resource")
                .find((e) => e.startTime >= t0 && pattern.test(new URL(e.name).pathname));
              return entry ? [Math.round(entry.startTime - t0), Math.round(entry.responseEnd - t0)] : null;
            };
            resolve({
              ms: t1 - t0,
              caseJson: phase(/^\/api\/cases\/[^/]+$/),
              dicomFile: phase(/\/instances\/[^/]+\/file$/),
            });
          } else if (failed()) {
            observer.disconnect();
            reject(new Error("the viewport went to data-state=error"));
          }
        });
        observer.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
        setTimeout(() => {
          observer.disconnect();
          reject(new Error("not ready within 60 s"));
        }, 60_000);
        performance.clearResourceTimings();
        t0 = performance.now();
        link.click();
      }),
    { label: `Open case ${short(caseId)}` },
  );
  await waitViewportReady(page, "radiograph-viewport");
  return timing;
}

const span = (pair) => (pair ? `${pair[0]}–${pair[1]}` : "?");

/** Fetch + parse + frame copy + min/max of the same file, inside the page (ms). */
async function timeBaseline(page, item, token) {
  return page.evaluate(
    async ({ url, token }) => {
      const t0 = performance.now();
      const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) throw new Error(`${url}: ${response.status}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const dataSet = window.dicomParser.parseDicom(bytes);
      const element = dataSet.elements.x7fe00010;
      const rows = dataSet.uint16("x00280010");
      const columns = dataSet.uint16("x00280011");
      const bits = dataSet.uint16("x00280100");
      const signed = dataSet.uint16("x00280103") === 1;
      const length = rows * columns;
      const Kind = bits === 16 ? (signed ? Int16Array : Uint16Array) : Uint8Array;
      const frame = new Kind(length);
      frame.set(new Kind(bytes.buffer.slice(element.dataOffset, element.dataOffset + length * Kind.BYTES_PER_ELEMENT)));
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < length; i++) {
        const v = frame[i];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const ms = performance.now() - t0;
      if (!(max >= min)) throw new Error("decode gave no pixels");
      return ms;
    },
    { url: `/api/cases/${item.case_id}/instances/${item.instance_id}/file`, token },
  );
}

/** Renders per second while the right button drags over the viewport. */
async function dragFps(page) {
  const viewport = page.getByTestId("radiograph-viewport");
  const box = await viewport.boundingBox();
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  const counter = () =>
    page.evaluate(() => ({
      renders: Number(document.querySelector('[data-testid="radiograph-viewport"]').getAttribute("data-renders") ?? 0),
      t: performance.now(),
    }));
  await page.mouse.move(cx, cy);
  await page.mouse.down({ button: "right" });
  let moves = 0;
  let phase = 0;
  const move = async () => {
    phase += 1;
    moves += 1;
    await page.mouse.move(cx + 120 * Math.sin(phase / 9), cy + 80 * Math.cos(phase / 13));
  };
  for (let i = 0; i < 10; i++) await move();
  const start = await counter();
  const startMoves = moves;
  const end = Date.now() + dragMs;
  while (Date.now() < end) await move();
  const stop = await counter();
  await page.mouse.up({ button: "right" });
  const seconds = (stop.t - start.t) / 1000;
  return {
    fps: +((stop.renders - start.renders) / seconds).toFixed(1),
    moves_per_s: +((moves - startMoves) / seconds).toFixed(1),
    renders: stop.renders - start.renders,
    seconds: +seconds.toFixed(2),
  };
}

/** The same drag driven inside the page: one mousemove per animation frame (a mouse that
 * reports at the display rate), so the figure is renders per second with input never the
 * bottleneck (at most the frame rate, 60 in headless Chromium). */
async function dragFpsInPage(page) {
  return page.evaluate(async (ms) => {
    const root = document.querySelector('[data-testid="radiograph-viewport"]');
    const target = root.querySelector("canvas.cornerstone-canvas");
    const box = target.getBoundingClientRect();
    const cx = box.left + box.width / 2;
    const cy = box.top + box.height / 2;
    const mouse = (type, x, y) =>
      target.dispatchEvent(new MouseEvent(type, { bubbles: true, cancelable: true, clientX: x, clientY: y, button: 2, buttons: type === "mouseup" ? 0 : 2 }));
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    mouse("mousedown", cx, cy);
    let phase = 0;
    for (let i = 0; i < 10; i++) {
      phase += 1;
      mouse("mousemove", cx + 120 * Math.sin(phase / 9), cy + 80 * Math.cos(phase / 13));
      await frame();
    }
    const r0 = Number(root.dataset.renders ?? 0);
    const t0 = performance.now();
    let frames = 0;
    while (performance.now() - t0 < ms) {
      phase += 1;
      frames += 1;
      mouse("mousemove", cx + 120 * Math.sin(phase / 9), cy + 80 * Math.cos(phase / 13));
      await frame();
    }
    const seconds = (performance.now() - t0) / 1000;
    const renders = Number(root.dataset.renders ?? 0) - r0;
    mouse("mouseup", cx, cy);
    return { fps: +(renders / seconds).toFixed(1), moves_per_s: +(frames / seconds).toFixed(1), renders, seconds: +seconds.toFixed(2) };
  }, dragMs);
}

const { browser, context, page } = await openBrowser();
let code = 0;
try {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  const token = await accessToken();
  await page.goto(BASE_URL);
  await signIn(page, env("RAD_USER"), env("RAD_PASSWORD"));
  await page.evaluate(dicomParserSource);
  const [warm, ...measured] = cases;
  log(`warm-up open ${short(warm.case_id)} ...`);
  const coldOpen = (await timeOpen(page, warm.case_id)).ms;
  const coldBaseline = await timeBaseline(page, warm, token);
  log(`warm-up: open ${coldOpen.toFixed(0)} ms, baseline ${coldBaseline.toFixed(0)} ms`);
  const opens = [];
  const baselines = [];
  const phases = [];
  for (const [n, item] of measured.entries()) {
    let open;
    let base;
    if (n % 2 === 0) {
      open = await timeOpen(page, item.case_id);
      base = await timeBaseline(page, item, token);
    } else {
      base = await timeBaseline(page, item, token);
      open = await timeOpen(page, item.case_id);
    }
    opens.push(open.ms);
    baselines.push(base);
    phases.push({ case_json: open.caseJson, dicom_file: open.dicomFile });
    log(
      `${n + 1}/${measured.length} ${short(item.case_id)}: open ${open.ms.toFixed(0)} ms ` +
        `(case JSON ${span(open.caseJson)} ms, DICOM file ${span(open.dicomFile)} ms after the click), ` +
        `fetch+decode ${base.toFixed(0)} ms`,
    );
  }
  await page.screenshot({ path: `${process.env.ARTIFACTS ?? "."}/bench-last-open.png` });
  const dragRuns = [];
  const pageDragRuns = [];
  for (let i = 0; i < drags; i++) {
    const run = await dragFps(page);
    log(`drag ${i + 1} (CDP mouse): ${JSON.stringify(run)}`);
    dragRuns.push(run);
    const inPage = await dragFpsInPage(page);
    log(`drag ${i + 1} (in-page, one move per frame): ${JSON.stringify(inPage)}`);
    pageDragRuns.push(inPage);
  }
  writeFileSync(
    env("OUT"),
    JSON.stringify({ cold_open_ms: coldOpen, cold_baseline_ms: coldBaseline, open_ms: opens, open_phases: phases, baseline_ms: baselines, drags: dragRuns, page_drags: pageDragRuns, chromium: browser.version() }, null, 1),
  );
} catch (error) {
  console.log(`FAILED: ${error?.stack ?? error}`);
  await page.screenshot({ path: `${process.env.ARTIFACTS ?? "."}/bench-FAILED.png` }).catch(() => undefined);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
