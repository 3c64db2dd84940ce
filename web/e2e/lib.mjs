// What the browser scenarios share: the browser, sign-in, named steps with screenshots,
// axe-core checks, viewport pixel reads and small waits. Each scenario is a plain Node
// script (run by tests/e2e/test_workstation.py) that exits 0 when every step passed.
//
// Environment: BASE_URL (the running `medvision serve`), CHROMIUM (browser binary),
// ARTIFACTS (folder for step screenshots), SCREENSHOTS_DIR (when set, the README
// screenshots are written there), plus each scenario's own variables.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import AxeBuilder from "@axe-core/playwright";
import { chromium } from "playwright-core";
import { changedFraction, decodePng, imageStats } from "./png.mjs";

export { changedFraction, imageStats };

/** The flags Chromium needs here: no GPU (WebGL2 still works, in software), no sandbox
 * (containers), and nothing that talks to the network on its own. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
export const VIEWPORT = { width: 1280, height: 720 };

/** A required environment variable. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

export const BASE_URL = env("BASE_URL").replace(/\/$/, "");
const ARTIFACTS = process.env.ARTIFACTS || "test-results/e2e";
const SCREENSHOTS_DIR = process.env.SCREENSHOTS_DIR || "";

const started = Date.now();
function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);
}
export { log };

/** Chromium with a 1280×720 page; console errors and page errors are printed as they come. */
export async function openBrowser() {
  const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (error) => log(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") log(`console error: ${message.text()}`);
  });
  return { browser, context, page };
}

/**
 * Runs a scenario: ``body({ page, step, ... })`` with named steps. A failing step saves a
 * screenshot ``<scenario>-FAILED-<step>.png`` and the script exits 1; at the end every axe
 * problem found on the way fails the scenario too.
 */
export async function scenario(name, body) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const { browser, context, page } = await openBrowser();
  const axeProblems = [];
  let shots = 0;
  let current = "start";
  const tools = {
    page,
    context,
    async step(title, fn) {
      current = title;
      const t0 = Date.now();
      log(`${name}: ${title} ...`);
      const result = await fn();
      log(`${name}: ${title} ok (${Date.now() - t0} ms)`);
      return result;
    },
    /** A screenshot of the page for this step, in ARTIFACTS. */
    async shot(label) {
      shots += 1;
      const file = join(ARTIFACTS, `${name}-${String(shots).padStart(2, "0")}-${label}.png`);
      await page.screenshot({ path: file });
      return file;
    },
    /** axe-core on the page as it is: serious and critical violations are kept (printed
     * now, failing the scenario at the end). */
    async axe(label) {
      const results = await new AxeBuilder({ page }).analyze();
      const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
      for (const violation of bad) {
        const nodes = violation.nodes.map((n) => `      ${n.target.join(" ")}: ${n.failureSummary?.split("\n").join(" ")}`);
        const text = `${label}: [${violation.impact}] ${violation.id} — ${violation.help}\n${nodes.join("\n")}`;
        axeProblems.push(text);
        log(`axe ${text}`);
      }
      const all = results.violations.map((v) => `${v.id} (${v.impact})`).join(", ");
      log(`axe ${label}: ${results.violations.length} violation(s)${all ? `: ${all}` : ""}; ${bad.length} serious/critical`);
    },
    /** The README screenshot ``file`` (whole page), when SCREENSHOTS_DIR is set. */
    async readmeShot(file) {
      if (!SCREENSHOTS_DIR) return;
      mkdirSync(SCREENSHOTS_DIR, { recursive: true });
      await page.mouse.move(0, 0); // no hover highlight in the picture
      await page.screenshot({ path: join(SCREENSHOTS_DIR, file) });
      log(`README screenshot ${file}`);
    },
  };
  let failed = false;
  try {
    await body(tools);
    if (axeProblems.length > 0) {
      failed = true;
      console.log(`\n${axeProblems.length} serious/critical accessibility violation(s):\n${axeProblems.join("\n")}`);
    }
  } catch (error) {
    failed = true;
    console.log(`\nFAILED in step "${current}": ${error?.stack ?? error}`);
    const file = join(ARTIFACTS, `${name}-FAILED-${current.replace(/[^a-z0-9]+/gi, "_").slice(0, 60)}.png`);
    await page.screenshot({ path: file }).catch(() => undefined);
    console.log(`screenshot: ${file}`);
    writeFileSync(join(ARTIFACTS, `${name}-FAILED.html`), await page.content().catch(() => ""));
  } finally {
    await browser.close();
  }
  log(`${name}: ${failed ? "FAILED" : "passed"}`);
  process.exit(failed ? 1 : 0);
}

/** Signs in on the login page the app shows to anyone signed out. */
export async function signIn(page, username, password) {
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
}

/** The first 8 characters of a case id, as buttons and links name cases. */
export const short = (id) => id.slice(0, 8);

/** Polls ``fn`` until it returns a truthy value (returned), or throws after ``timeoutMs``. */
export async function until(fn, what, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Waits for a viewport root (by test id) to say data-state="ready"; fails at "error". */
export async function waitViewportReady(page, testId, timeoutMs = 60_000) {
  const root = page.getByTestId(testId);
  await root.waitFor({ timeout: timeoutMs });
  await until(
    async () => {
      const state = await root.getAttribute("data-state");
      if (state === "error") throw new Error(`${testId} is in state "error": ${await root.innerText().catch(() => "")}`);
      return state === "ready";
    },
    `${testId} data-state="ready"`,
    timeoutMs,
  );
  return root;
}

/** Waits until a counter attribute (e.g. data-renders) has not changed for ``quietMs``. */
export async function settle(locator, attribute = "data-renders", quietMs = 400, timeoutMs = 10_000) {
  let last = await locator.getAttribute(attribute);
  let since = Date.now();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await locator.getAttribute(attribute);
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}

/** The pixels of an element as the screen shows them (see png.mjs for why a screenshot). */
export async function pixels(locator) {
  return decodePng(await locator.screenshot({ animations: "disabled" }));
}

/** Takes ``pixels`` until two reads in a row agree (the renderer has finished a change). */
export async function stablePixels(locator, timeoutMs = 10_000) {
  let previous = await pixels(locator);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 150));
    const next = await pixels(locator);
    if (changedFraction(previous, next, 2) === 0) return next;
    previous = next;
  }
  return previous;
}

/** Asserts that an element's pixels are not blank: enough lit pixels with some contrast. */
export function assertNotBlank(image, what) {
  const stats = imageStats(image);
  log(`${what}: ${JSON.stringify(stats)}`);
  if (stats.litFraction < 0.05 || stats.std < 5) throw new Error(`${what} looks blank: ${JSON.stringify(stats)}`);
  return stats;
}

/** Asserts that at least ``minFraction`` of the pixels differ between two reads. */
export function assertChanged(before, after, what, minFraction = 0.01) {
  const fraction = changedFraction(before, after);
  log(`${what}: ${(fraction * 100).toFixed(2)} % of the pixels changed`);
  if (fraction < minFraction)
    throw new Error(`${what}: only ${(fraction * 100).toFixed(2)} % of the pixels changed (want ≥ ${minFraction * 100} %)`);
  return fraction;
}

/** A drag with the given mouse button from the element's centre by (dx, dy) in ``steps``. */
export async function drag(page, locator, { button = "left", dx = 0, dy = 0, steps = 12, from = [0.5, 0.5] } = {}) {
  const box = await locator.boundingBox();
  if (!box) throw new Error("the element has no box");
  const x = box.x + box.width * from[0];
  const y = box.y + box.height * from[1];
  await page.mouse.move(x, y);
  await page.mouse.down({ button });
  for (let i = 1; i <= steps; i++) await page.mouse.move(x + (dx * i) / steps, y + (dy * i) / steps);
  await page.mouse.up({ button });
}

/** Removes focus from text fields and checkboxes so that single-key shortcuts reach the app. */
export async function blur(page) {
  await page.evaluate(() => {
    const active = document.activeElement;
    if (active instanceof HTMLElement) active.blur();
  });
}
