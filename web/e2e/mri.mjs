// A radiologist reviews a brain MRI segmentation: open the case from the worklist, claim it,
// see the volume with the AI's segmentation, toggle the regions, then draw a correction
// with the ED pen and save the mask with a reason. (The test then checks through the API
// that the finding's current decision is an edit.)
//
// Environment (besides lib.mjs's): RAD_USER, RAD_PASSWORD, MRI_CASE_ID.
import {
  assertChanged,
  assertNotBlank,
  BASE_URL,
  drag,
  env,
  scenario,
  short,
  signIn,
  stablePixels,
  until,
  waitViewportReady,
} from "./lib.mjs";

const caseId = env("MRI_CASE_ID");
const REGIONS = ["Necrotic core (NCR)", "Edema (ED)", "Enhancing tumour (ET)"];

await scenario("mri", async ({ page, step, shot, axe, readmeShot }) => {
  await step("sign in and open the MRI case from the worklist", async () => {
    await page.goto(BASE_URL);
    await signIn(page, env("RAD_USER"), env("RAD_PASSWORD"));
    await page.getByRole("link", { name: `Open case ${short(caseId)}` }).click();
    await page.waitForURL(`**/cases/${caseId}`);
  });

  await step("claim it on the case page", async () => {
    await page.getByRole("button", { name: "Claim", exact: true }).click();
    await page.getByText("held by").waitFor();
  });

  const viewport = await step("the volume and its segmentation are painted", async () =>
    waitViewportReady(page, "mri-viewport"),
  );
  const withAll = await stablePixels(viewport);
  assertNotBlank(withAll, "MRI viewport");
  await shot("mri-open");

  await step("each region toggle changes the pixels", async () => {
    let before = withAll;
    for (const name of REGIONS) {
      const box = page.getByRole("checkbox", { name });
      if (!(await box.isChecked())) throw new Error(`"${name}" is not shown on open`);
      await box.uncheck();
      const after = await stablePixels(viewport);
      assertChanged(before, after, `${name} hidden`, 0.0005);
      before = after;
    }
    assertNotBlank(before, "MRI without segmentation");
    await shot("regions-off");
    for (const name of REGIONS) await page.getByRole("checkbox", { name }).check();
    const again = await stablePixels(viewport);
    assertChanged(before, again, "regions shown again", 0.002);
  });

  await step("the sequence and view buttons are there", async () => {
    for (const name of ["T1", "T1ce", "T2", "FLAIR", "Axial", "Coronal", "Sagittal", "3D"])
      await page.getByRole("button", { name, exact: true }).waitFor();
  });

  await step("axial view: accessibility and README screenshot", async () => {
    const before = await stablePixels(viewport);
    await page.getByRole("button", { name: "Axial", exact: true }).click();
    assertChanged(before, await stablePixels(viewport), "axial view");
    await shot("axial");
    await axe("MRI case");
    await readmeShot("mri-segmentation.png");
  });

  await step("edit the mask with the ED pen and save it with a reason", async () => {
    await page.getByRole("button", { name: "Edit mask" }).click();
    await page.getByRole("button", { name: "ED", exact: true }).click();
    const before = await stablePixels(viewport);
    await drag(page, viewport, { button: "left", from: [0.42, 0.45], dx: 90, dy: 40, steps: 20 });
    const drawn = await stablePixels(viewport);
    assertChanged(before, drawn, "ED pen stroke", 0.0005);
    await shot("mask-stroke");
    await page.getByLabel("Reason for the mask edit").fill("Oedema extends further than the AI mask.");
    await page.getByRole("button", { name: "Save mask" }).click();
    await until(
      async () => (await page.getByTestId("current-decision").filter({ hasText: "edit" }).count()) > 0,
      "the finding's decision to read edit",
      30_000,
    );
    await waitViewportReady(page, "mri-viewport");
    await shot("mask-saved");
  });
});
