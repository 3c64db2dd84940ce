// A radiologist reads a head CT series the ct_head model read slice by slice: open the case,
// see the slice with the most haemorrhage and its heat map, toggle the map, step through the
// slices (keys, positive-slice list, slider) and windows, correct the label set, sign off.
//
// Environment (besides lib.mjs's): RAD_USER, RAD_PASSWORD, CT_CASE_ID, CT_START_SLICE (the
// slice with the highest `any` probability), CT_SLICES (how many). Every slice is expected to
// be positive (the test lowers the thresholds), so every slice has a heat map to see.
import { assertChanged, assertNotBlank, BASE_URL, blur, env, scenario, signIn, stablePixels, until, waitViewportReady } from "./lib.mjs";

const caseId = env("CT_CASE_ID");
const startSlice = Number(env("CT_START_SLICE"));
const sliceCount = Number(env("CT_SLICES"));

await scenario("ct_head", async ({ page, step, shot, axe }) => {
  await step("sign in on the case page", async () => {
    await page.goto(`${BASE_URL}/cases/${caseId}`);
    await signIn(page, env("RAD_USER"), env("RAD_PASSWORD"));
    await page.getByRole("article", { name: "Finding 1" }).getByRole("heading", { name: /head CT haemorrhage/ }).waitFor();
  });

  await step("claim it", async () => {
    await page.getByRole("button", { name: "Claim", exact: true }).click();
    await page.getByText("held by").waitFor();
  });

  const viewport = page.getByTestId("ct-viewport");
  const image = page.getByTestId("ct-slice-image");
  const heat = page.getByTestId("ct-heatmap-overlay");
  const shown = async (slice) =>
    (await viewport.getAttribute("data-slice")) === String(slice) &&
    (await image.getAttribute("data-slice")) === String(slice) &&
    (await heat.getAttribute("data-slice")) === String(slice);

  const painted = await step("the slice with the highest any probability is painted with its heat map", async () => {
    await waitViewportReady(page, "ct-viewport");
    await until(() => shown(startSlice), `slice ${startSlice} and its heat map`);
    await until(async () => (await heat.getAttribute("data-visible")) === "true", 'ct-heatmap-overlay data-visible="true"');
    const pixels = await stablePixels(image);
    assertNotBlank(pixels, "head CT slice with its heat map");
    await shot("ct-open");
    return pixels;
  });

  await step("the heat map toggles with key o", async () => {
    await blur(page);
    await page.keyboard.press("o");
    await until(async () => (await heat.getAttribute("data-visible")) === "false", "heat map hidden");
    const without = await stablePixels(image);
    assertChanged(painted, without, "heat map off");
    assertNotBlank(without, "head CT slice without its heat map");
    await page.keyboard.press("o");
    await until(async () => (await heat.getAttribute("data-visible")) === "true", "heat map shown again");
  });

  await step("up/down step through the slices", async () => {
    const [key, next] = startSlice + 1 < sliceCount ? ["ArrowUp", startSlice + 1] : ["ArrowDown", startSlice - 1];
    await blur(page);
    await page.keyboard.press(key);
    await until(() => shown(next), `slice ${next} after ${key}`);
  });

  await step("the bone window (key 3) changes the pixels", async () => {
    const brain = await stablePixels(image);
    await page.keyboard.press("3");
    await until(async () => (await image.getAttribute("data-window")) === "bone", "the bone window");
    assertChanged(brain, await stablePixels(image), "bone window", 0.05);
    await page.getByRole("button", { name: /Brain/ }).click();
    await until(async () => (await image.getAttribute("data-window")) === "brain", "the brain window again");
  });

  await step("the positive-slice list and the slider go to a slice", async () => {
    const list = page.getByRole("region", { name: "Slices with positive labels" }).getByRole("button");
    const count = await list.count();
    if (count !== sliceCount) throw new Error(`${count} positive slices listed, want ${sliceCount}`);
    await list.first().click();
    await until(() => shown(0), "slice 0 from the list");
    await page.getByRole("slider", { name: "Slice" }).fill(String(sliceCount - 1));
    await until(() => shown(sliceCount - 1), "the last slice from the slider");
  });

  await step("case page accessibility", async () => {
    await blur(page);
    await shot("ct-slice");
    await axe("head CT case");
  });

  await step("correct the label set to any + subdural", async () => {
    const finding = page.getByRole("article", { name: "Finding 1" });
    await finding.getByRole("button", { name: "Edit" }).click();
    for (const label of ["epidural", "intraparenchymal", "intraventricular", "subarachnoid"]) await finding.getByRole("checkbox", { name: label, exact: true }).uncheck();
    for (const label of ["any", "subdural"]) await finding.getByRole("checkbox", { name: label, exact: true }).check();
    await finding.getByLabel("Reason", { exact: true }).fill("Synthetic series: a thin subdural collection only.");
    await finding.getByRole("button", { name: "Save correction" }).click();
    await finding.getByTestId("current-decision").filter({ hasText: "edit" }).waitFor();
  });

  await step("sign off", async () => {
    const signOff = page.getByRole("button", { name: "Sign off" });
    await until(() => signOff.isEnabled(), "Sign off to be enabled");
    await signOff.click();
    await page.getByRole("status").filter({ hasText: "read-only" }).waitFor();
    await waitViewportReady(page, "ct-viewport");
  });
});
