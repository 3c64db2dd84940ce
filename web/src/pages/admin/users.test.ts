import { describe, expect, it } from "vitest";
import { createUserBody, EMPTY_USER, newUserProblem } from "./users";

const valid = { ...EMPTY_USER, username: "dr.smith", password: "twelve-chars" };

describe("new user form", () => {
  it("accepts a valid username and a 12-character password", () => {
    expect(newUserProblem(valid)).toBeNull();
  });

  it.each([
    ["too short", "ab"],
    ["a space", "dr smith"],
    ["a slash", "dr/smith"],
    ["too long", "x".repeat(65)],
  ])("refuses a username with %s", (_why, username) => {
    expect(newUserProblem({ ...valid, username })).toMatch(/^Username/);
  });

  it("refuses a password under 12 characters or with surrounding spaces", () => {
    expect(newUserProblem({ ...valid, password: "elevenchars" })).toMatch(/at least 12/);
    expect(newUserProblem({ ...valid, password: " twelve-chars" })).toMatch(/space/);
  });

  it("sends the full name only when one was typed", () => {
    expect(createUserBody({ ...valid, fullName: "  " })).toEqual({ username: "dr.smith", password: "twelve-chars", role: "radiologist" });
    expect(createUserBody({ ...valid, fullName: " Dr Smith " })).toMatchObject({ full_name: "Dr Smith" });
  });
});
