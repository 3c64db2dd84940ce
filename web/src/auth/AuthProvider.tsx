/** Who is signed in, for the whole app; restores a session after a reload. */
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { api, unwrap } from "../api/client";
import type { UserOut } from "../api/types";
import { canResume, login as passwordLogin, logout as revokeAndForget, onSessionChange, refresh } from "./session";

interface AuthState {
  /** null while signed out; undefined while the session is being restored. */
  user: UserOut | null | undefined;
  login: (username: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [signedIn, setSignedIn] = useState<boolean | undefined>(canResume() ? undefined : false);

  useEffect(() => onSessionChange(setSignedIn), []);
  useEffect(() => {
    if (signedIn === undefined) void refresh().then(setSignedIn);
  }, [signedIn]);
  useEffect(() => {
    if (signedIn === false) queryClient.clear();
  }, [signedIn, queryClient]);

  const me = useQuery({
    queryKey: ["me"],
    queryFn: async () => unwrap(await api.GET("/api/users/me")),
    enabled: signedIn === true,
    staleTime: 60_000,
  });

  const user = signedIn === false ? null : signedIn === undefined || me.isPending ? undefined : (me.data ?? null);
  const value: AuthState = {
    user,
    login: passwordLogin,
    logout: async () => {
      await revokeAndForget();
      queryClient.clear();
    },
  };
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside AuthProvider");
  return state;
}
