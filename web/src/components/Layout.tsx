/** The frame around every signed-in page: navigation, user, theme, shortcuts help. */
import { useState } from "react";
import { NavLink, Outlet } from "react-router-dom";
import { useAuth } from "../auth/AuthProvider";
import { useShortcuts } from "../lib/keyboard";
import { applyTheme, storedTheme, type Theme } from "../lib/theme";
import { ShortcutsDialog } from "./ShortcutsDialog";

const link = ({ isActive }: { isActive: boolean }) =>
  `rounded px-2 py-1 ${isActive ? "bg-raised text-fg" : "text-muted hover:text-fg"}`;

export function Layout() {
  const { user, logout } = useAuth();
  const [theme, setTheme] = useState<Theme>(storedTheme());
  const [help, setHelp] = useState(false);
  useShortcuts({ "?": () => setHelp(true) });
  const toggleTheme = () => {
    const next = theme === "dark" ? "light" : "dark";
    applyTheme(next);
    setTheme(next);
  };
  return (
    <div className="flex h-full flex-col">
      <header className="flex items-center gap-4 border-b border-line bg-panel px-4 py-2">
        <span className="font-semibold tracking-wide text-fg">MedVision</span>
        <nav aria-label="Main" className="flex gap-1 text-sm">
          <NavLink to="/" end className={link}>
            Worklist
          </NavLink>
          {user?.role === "admin" && (
            <>
              <NavLink to="/admin/users" className={link}>
                Users
              </NavLink>
              <NavLink to="/admin/audit" className={link}>
                Audit log
              </NavLink>
              <NavLink to="/admin/models" className={link}>
                Models
              </NavLink>
            </>
          )}
        </nav>
        <div className="ml-auto flex items-center gap-3 text-sm">
          <button type="button" className="btn" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts">
            ?
          </button>
          <button type="button" className="btn" onClick={toggleTheme} aria-label={theme === "dark" ? "Light theme" : "Dark theme"}>
            {theme === "dark" ? "Light" : "Dark"}
          </button>
          <span className="text-muted">
            {user?.username} <span className="text-xs">({user?.role})</span>
          </span>
          <button type="button" className="btn" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      </header>
      <main className="min-h-0 flex-1 overflow-auto">
        <Outlet />
      </main>
      <ShortcutsDialog open={help} onClose={() => setHelp(false)} />
    </div>
  );
}
