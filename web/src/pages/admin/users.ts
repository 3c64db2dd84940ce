/** The users page's rules, checked before anything is sent (the API checks them again). */
import type { Role } from "../../api/types";

/** Mirrors control/domain/auth/passwords.py MIN_PASSWORD_LENGTH. */
export const MIN_PASSWORD_LENGTH = 12;
/** Mirrors control/domain/users/schemas.py Username. */
export const USERNAME_PATTERN = /^[A-Za-z0-9_.@-]{3,64}$/;

export const ROLES: readonly Role[] = ["admin", "radiologist", "mlops", "integration"];

export const ROLE_LABEL: Record<Role, string> = {
  admin: "admin",
  radiologist: "radiologist",
  mlops: "MLOps",
  integration: "integration (PACS/RIS)",
};

export interface NewUser {
  username: string;
  fullName: string;
  role: Role;
  password: string;
}

export const EMPTY_USER: NewUser = { username: "", fullName: "", role: "radiologist", password: "" };

/** Why the form cannot be sent yet, or null when it can. */
export function newUserProblem(form: NewUser): string | null {
  if (!USERNAME_PATTERN.test(form.username))
    return "Username: 3 to 64 characters, letters, digits and _ . @ - only.";
  if (form.password.length < MIN_PASSWORD_LENGTH) return `Password: at least ${MIN_PASSWORD_LENGTH} characters.`;
  if (form.password.trim() !== form.password) return "Password: must not start or end with a space.";
  return null;
}

/** The body of POST /api/users; a blank full name is left out. */
export function createUserBody(form: NewUser) {
  const fullName = form.fullName.trim();
  return { username: form.username, password: form.password, role: form.role, ...(fullName ? { full_name: fullName } : {}) };
}
