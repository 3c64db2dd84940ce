// An administrator looks at users, verifies the audit chain from the UI, and looks at the
// served models; axe-core on each page.
//
// Environment (besides lib.mjs's): ADMIN_USER, ADMIN_PASSWORD.
import { BASE_URL, env, scenario, signIn } from "./lib.mjs";

await scenario("admin", async ({ page, step, shot, axe }) => {
  const main = page.getByRole("navigation", { name: "Main" });

  await step("sign in as admin", async () => {
    await page.goto(BASE_URL);
    await signIn(page, env("ADMIN_USER"), env("ADMIN_PASSWORD"));
  });

  await step("users page", async () => {
    await main.getByRole("link", { name: "Users" }).click();
    await page.waitForURL("**/admin/users");
    await page.getByText(env("ADMIN_USER")).first().waitFor();
    await page.getByText(env("RAD_USER")).first().waitFor();
    await shot("users");
    await axe("admin users");
  });

  await step("the audit chain verifies intact from the UI", async () => {
    await main.getByRole("link", { name: "Audit log" }).click();
    await page.waitForURL("**/admin/audit");
    await page.getByRole("button", { name: "Verify chain" }).click();
    await page.getByRole("status").filter({ hasText: "intact" }).waitFor({ timeout: 30_000 });
    await shot("audit-verified");
    await axe("admin audit");
  });

  await step("models page", async () => {
    await main.getByRole("link", { name: "Models" }).click();
    await page.waitForURL("**/admin/models");
    await page.getByText("cxr").first().waitFor();
    await shot("models");
    await axe("admin models");
  });
});
