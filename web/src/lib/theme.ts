/** Dark by default; the light theme is a per-browser choice. */
const KEY = "medvision.theme";
export type Theme = "dark" | "light";

export function storedTheme(): Theme {
  return localStorage.getItem(KEY) === "light" ? "light" : "dark";
}

export function applyTheme(theme: Theme): void {
  const root = document.documentElement;
  root.classList.toggle("dark", theme === "dark");
  root.classList.toggle("light", theme === "light");
  localStorage.setItem(KEY, theme);
}
