// A radiologist reads a two-image chest DX study: sign in, find it in the worklist, claim
// and open it, see the image, window/level it, toggle the heat map, accept one finding,
// reject the other with a reason, sign off; the case is read-only afterwards.
//
// Environment (besides lib.mjs's): RAD_USER, RAD_PASSWORD, DX_CASE_ID.
import {
  assertChanged,
  assertNotBlank,
  BASE_URL,
  blur,
  changedFraction,
  drag,
  env,
  log,
  scenario,
  settle,
  short,
  signIn,
  stablePixels,
  until,
  waitViewportReady,
} from "./lib.mjs";

const caseId = env("DX_CASE_ID");

await scenario("radiograph", async ({ page, step, shot, axe, readmeShot }) => {
  await step("sign in", async () => {
    await page.goto(BASE_URL);
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    await shot("login");
    await axe("login page");
    await signIn(page, env("RAD_USER"), env("RAD_PASSWORD"));
  });

  await step("the uploaded DX is in the worklist", async () => {
    const row = page.locator(`tr[data-case-id="${caseId}"]`);
    await row.waitFor();
    if (!(await row.innerText()).includes("DX")) throw new Error(`the row does not say DX: ${await row.innerText()}`);
    await page.getByRole("button", { name: `Claim case ${short(caseId)}` }).waitFor();
    await shot("worklist");
    await axe("worklist");
    await readmeShot("worklist.png");
  });

  await step("claim it (the case opens)", async () => {
    await page.getByRole("button", { name: `Claim case ${short(caseId)}` }).click();
    await page.waitForURL(`**/cases/${caseId}`);
    await page.getByText("held by").waitFor();
  });

  const viewport = await step("the image is painted", async () => {
    const root = await waitViewportReady(page, "radiograph-viewport");
    await settle(root);
    return root;
  });
  // Pixels are read from the image area (Cornerstone's canvas, with the heat map canvas
  // layered over it), not the viewport root, whose toolbar shows the changing W/L numbers.
  const image = viewport.locator("canvas.cornerstone-canvas");
  const painted = await stablePixels(image);
  assertNotBlank(painted, "radiograph viewport");
  await shot("radiograph-open");

  const camOverlay = page.getByTestId("cam-overlay");
  await step("the heat map is shown on open", async () => {
    await until(async () => (await camOverlay.getAttribute("data-visible")) === "true", 'cam-overlay data-visible="true"');
  });

  await step("window/level: a right-drag changes the pixels", async () => {
    await drag(page, image, { button: "right", from: [0.3, 0.3], dx: 300, dy: 200, steps: 20 });
    await settle(viewport);
    const after = await stablePixels(image);
    assertChanged(painted, after, "window/level drag");
    await shot("window-level");
  });

  await step("Reset restores the view", async () => {
    await page.getByRole("button", { name: "Reset" }).click();
    await settle(viewport);
    const reset = await stablePixels(image);
    const fraction = changedFraction(painted, reset);
    if (fraction > 0.01) throw new Error(`after Reset ${(fraction * 100).toFixed(2)} % of the pixels differ from the first paint`);
  });

  await step("window presets (keys 1–4) and Invert change the pixels", async () => {
    const before = await stablePixels(image);
    await blur(page);
    const changes = [];
    for (const key of ["1", "2", "3", "4"]) {
      await page.keyboard.press(key);
      await settle(viewport);
      changes.push(changedFraction(before, await stablePixels(image)));
    }
    log(`presets 1–4 changed ${changes.map((f) => `${(f * 100).toFixed(1)} %`).join(", ")} of the pixels`);
    if (Math.max(...changes) < 0.01) throw new Error("no window preset changed the image");
    await page.getByRole("button", { name: "Reset" }).click();
    await settle(viewport);
    const reset = await stablePixels(image);
    await page.getByRole("button", { name: "Invert" }).click();
    await settle(viewport);
    assertChanged(reset, await stablePixels(image), "Invert", 0.05);
    await page.getByRole("button", { name: "Invert" }).click();
    await page.getByRole("button", { name: "Reset" }).click();
    await settle(viewport);
    await page.getByRole("button", { name: "Length" }).waitFor();
  });

  await step("the heat map toggles with key o", async () => {
    const withCam = await stablePixels(image);
    await blur(page);
    await page.keyboard.press("o");
    await until(async () => (await camOverlay.getAttribute("data-visible")) === "false", 'cam-overlay data-visible="false"');
    const withoutCam = await stablePixels(image);
    assertChanged(withCam, withoutCam, "heat map off");
    assertNotBlank(withoutCam, "radiograph without the heat map");
    await shot("heat-map-off");
    await page.keyboard.press("o");
    await until(async () => (await camOverlay.getAttribute("data-visible")) === "true", 'cam-overlay data-visible="true" again');
    const again = await stablePixels(image);
    assertChanged(withoutCam, again, "heat map on again");
  });

  await step("the heat map toggles with its checkbox", async () => {
    const box = page.getByRole("checkbox", { name: /Show heat map/ });
    const before = await stablePixels(image);
    await box.uncheck();
    await until(async () => (await camOverlay.getAttribute("data-visible")) === "false", "heat map hidden by the checkbox");
    assertChanged(before, await stablePixels(image), "heat map checkbox off");
    await box.check();
    await until(async () => (await camOverlay.getAttribute("data-visible")) === "true", "heat map shown by the checkbox");
    await stablePixels(image);
  });

  await step("case page accessibility and README screenshot", async () => {
    // The findings panel scrolled to its checkbox above; show its top (the label bars).
    await page.getByRole("complementary", { name: "AI findings and review" }).evaluate((panel) => panel.scrollTo(0, 0));
    await blur(page);
    await shot("radiograph-cam");
    await axe("radiograph case");
    await readmeShot("radiograph-cam.png");
  });

  const finding1 = page.getByRole("article", { name: "Finding 1" });
  const finding2 = page.getByRole("article", { name: "Finding 2" });
  const signOff = page.getByRole("button", { name: "Sign off" });

  await step("sign-off waits for a decision on every finding", async () => {
    await signOff.waitFor();
    if (await signOff.isEnabled()) throw new Error("Sign off is enabled before any decision");
    const blocker = await page.locator("#sign-off-blocker").innerText();
    if (!blocker.trim()) throw new Error("no reason is shown for the disabled Sign off");
  });

  await step("accept finding 1", async () => {
    await finding1.getByRole("button", { name: "Accept" }).click();
    await finding1.getByTestId("current-decision").filter({ hasText: "accept" }).waitFor();
  });

  await step("reject finding 2 with a reason", async () => {
    await finding2.getByRole("button", { name: "Reject" }).click();
    await finding2.getByLabel("Reason", { exact: true }).fill("Synthetic image: no pathology expected.");
    await finding2.getByRole("button", { name: "Confirm rejection" }).click();
    await finding2.getByTestId("current-decision").filter({ hasText: "reject" }).waitFor();
    await shot("decided");
  });

  await step("sign off", async () => {
    await until(() => signOff.isEnabled(), "Sign off to be enabled");
    await signOff.click();
    await page.getByRole("status").filter({ hasText: "read-only" }).waitFor();
  });

  await step("the case is read-only, also after a reload", async () => {
    for (const when of ["after sign-off", "after reload"]) {
      if (when === "after reload") {
        await page.reload();
        await page.getByRole("status").filter({ hasText: "read-only" }).waitFor();
      }
      for (const name of ["Accept", "Reject", "Sign off", "Claim"]) {
        const count = await page.getByRole("button", { name, exact: true }).count();
        if (count > 0) throw new Error(`${when}: ${count} "${name}" button(s) remain`);
      }
    }
    await waitViewportReady(page, "radiograph-viewport");
    await shot("signed-off");
  });
});
