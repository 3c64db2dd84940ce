/** The keyboard shortcuts, shown with "?". */
import { useEffect, useRef } from "react";

export const SHORTCUTS: [string, string][] = [
  ["j / k", "next / previous case"],
  ["1 – 4", "window/level presets (1 – 3 on a head CT)"],
  ["↑ / ↓", "next / previous slice of a head CT (also the mouse wheel)"],
  ["o", "show / hide the AI overlay"],
  ["a", "accept the selected finding"],
  ["r", "reject the selected finding (asks for a reason)"],
  ["?", "this help"],
  ["Esc", "close dialogs"],
];

export function ShortcutsDialog({ open, onClose }: { open: boolean; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal?.();
    if (!open && dialog.open) dialog.close?.();
  }, [open]);
  return (
    <dialog ref={ref} aria-labelledby="shortcuts-title" onClose={onClose} className="m-auto rounded border border-line bg-panel p-4 text-fg backdrop:bg-black/60">
      <h2 id="shortcuts-title" className="mb-3 text-base font-semibold">
        Keyboard shortcuts
      </h2>
      <table className="text-sm">
        <tbody>
          {SHORTCUTS.map(([keys, what]) => (
            <tr key={keys}>
              <td className="pr-6 font-mono text-accent">{keys}</td>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <button type="button" className="btn mt-4" onClick={onClose}>
        Close
      </button>
    </dialog>
  );
}
