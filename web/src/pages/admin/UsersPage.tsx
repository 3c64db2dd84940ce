/** User management (admins): every account, create one, change a role, activate or
 * deactivate. The API refuses an admin demoting or disabling their own account; its message
 * is shown as it comes. */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, unwrap } from "../../api/client";
import type { Role, UserOut } from "../../api/types";
import { useAuth } from "../../auth/AuthProvider";
import { ErrorMessage } from "../../components/ErrorMessage";
import { formatDateTime } from "../../lib/format";
import { createUserBody, EMPTY_USER, MIN_PASSWORD_LENGTH, newUserProblem, ROLE_LABEL, ROLES, type NewUser } from "./users";

interface UserChange {
  user: UserOut;
  role?: Role;
  is_active?: boolean;
}

export function UsersPage() {
  const { user: self } = useAuth();
  const queryClient = useQueryClient();
  const users = useQuery({
    queryKey: ["users"],
    queryFn: async () => unwrap(await api.GET("/api/users")),
  });

  const update = useMutation({
    mutationFn: async ({ user, role, is_active }: UserChange) =>
      unwrap(await api.PATCH("/api/users/{user_id}", { params: { path: { user_id: user.id } }, body: { role, is_active } })),
    onSettled: () => void queryClient.invalidateQueries({ queryKey: ["users"] }),
  });
  const busyId = update.isPending ? update.variables.user.id : null;

  return (
    <div className="space-y-4 p-4">
      <div className="flex items-baseline gap-3">
        <h1 className="text-lg font-semibold">Users</h1>
        <span className="text-sm text-muted" aria-live="polite">
          {users.isFetching ? "loading…" : `${users.data?.length ?? 0} accounts`}
        </span>
      </div>

      <CreateUserForm onCreated={() => void queryClient.invalidateQueries({ queryKey: ["users"] })} />

      <ErrorMessage error={users.error} title="The users could not be loaded" />
      <ErrorMessage error={update.error} title={update.variables ? `${update.variables.user.username} was not changed` : undefined} />

      <div className="panel overflow-x-auto">
        <table className="w-full text-left text-sm">
          <caption className="sr-only">User accounts</caption>
          <thead className="border-b border-line text-muted">
            <tr>
              <th scope="col" className="px-3 py-2 font-normal">Username</th>
              <th scope="col" className="px-3 py-2 font-normal">Full name</th>
              <th scope="col" className="px-3 py-2 font-normal">Role</th>
              <th scope="col" className="px-3 py-2 font-normal">Status</th>
              <th scope="col" className="px-3 py-2 font-normal">Created</th>
              <th scope="col" className="px-3 py-2 font-normal">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(users.data ?? []).map((u) => (
              <UserRow
                key={u.id}
                user={u}
                isSelf={u.id === self?.id}
                busy={busyId === u.id}
                onChange={(change) => update.mutate({ user: u, ...change })}
              />
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function UserRow({
  user,
  isSelf,
  busy,
  onChange,
}: {
  user: UserOut;
  isSelf: boolean;
  busy: boolean;
  onChange: (change: { role?: Role; is_active?: boolean }) => void;
}) {
  return (
    <tr className={`border-b border-line/60 hover:bg-raised ${user.is_active ? "" : "text-muted"}`} data-user-id={user.id}>
      <td className="px-3 py-2 font-mono">
        {user.username}
        {isSelf && <span className="ml-2 text-xs text-muted">(you)</span>}
      </td>
      <td className="px-3 py-2">{user.full_name ?? <span className="text-muted">—</span>}</td>
      <td className="px-3 py-2">
        <select
          className="input"
          aria-label={`Role of ${user.username}`}
          value={user.role}
          disabled={busy}
          onChange={(e) => onChange({ role: e.target.value as Role })}
        >
          {ROLES.map((role) => (
            <option key={role} value={role}>
              {ROLE_LABEL[role]}
            </option>
          ))}
        </select>
      </td>
      <td className="px-3 py-2">
        {user.is_active ? <span className="text-ok">active</span> : <span className="text-danger">inactive</span>}
      </td>
      <td className="px-3 py-2 text-muted">{formatDateTime(user.created_at)}</td>
      <td className="px-3 py-2 text-right">
        {user.is_active ? (
          <button type="button" className="btn-danger" disabled={busy} aria-label={`Deactivate ${user.username}`} onClick={() => onChange({ is_active: false })}>
            Deactivate
          </button>
        ) : (
          <button type="button" className="btn" disabled={busy} aria-label={`Activate ${user.username}`} onClick={() => onChange({ is_active: true })}>
            Activate
          </button>
        )}
      </td>
    </tr>
  );
}

function CreateUserForm({ onCreated }: { onCreated: () => void }) {
  const [form, setForm] = useState<NewUser>(EMPTY_USER);
  const [problem, setProblem] = useState<string | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: async (values: NewUser) => unwrap(await api.POST("/api/users", { body: createUserBody(values) })),
    onSuccess: (user) => {
      setForm(EMPTY_USER);
      setCreated(`Created ${user.username} (${ROLE_LABEL[user.role]}).`);
      onCreated();
    },
  });
  const set = <K extends keyof NewUser>(key: K, value: NewUser[K]) => {
    setForm({ ...form, [key]: value });
    setCreated(null);
  };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = newUserProblem(form);
    setProblem(found);
    if (found) create.reset();
    else create.mutate(form);
  };

  return (
    <form className="panel space-y-2 p-3 text-sm" aria-labelledby="create-user-heading" onSubmit={submit} noValidate>
      <h2 id="create-user-heading" className="font-medium">
        New user
      </h2>
      <div className="flex flex-wrap items-end gap-3">
        <label className="flex flex-col gap-1">
          <span className="text-muted">Username</span>
          <input className="input" value={form.username} onChange={(e) => set("username", e.target.value)} autoComplete="off" maxLength={64} required />
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Full name</span>
          <input className="input" value={form.fullName} onChange={(e) => set("fullName", e.target.value)} autoComplete="off" maxLength={255} />
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Role</span>
          <select className="input" value={form.role} onChange={(e) => set("role", e.target.value as Role)}>
            {ROLES.map((role) => (
              <option key={role} value={role}>
                {ROLE_LABEL[role]}
              </option>
            ))}
          </select>
        </label>
        <label className="flex flex-col gap-1">
          <span className="text-muted">Password</span>
          <input
            className="input"
            type="password"
            value={form.password}
            onChange={(e) => set("password", e.target.value)}
            autoComplete="new-password"
            minLength={MIN_PASSWORD_LENGTH}
            aria-describedby="password-hint"
            required
          />
        </label>
        <button type="submit" className="btn-primary" disabled={create.isPending}>
          Create user
        </button>
      </div>
      <p id="password-hint" className="text-xs text-muted">
        At least {MIN_PASSWORD_LENGTH} characters. The password is stored only as an Argon2 hash; give it to the user by a separate channel.
      </p>
      {problem && (
        <p role="alert" className="text-xs text-danger">
          {problem}
        </p>
      )}
      <ErrorMessage error={create.error} title="The user was not created" />
      {created && (
        <p role="status" className="text-xs text-ok">
          {created}
        </p>
      )}
    </form>
  );
}
