/** Routes. Signed out, every URL shows the login page in place, so the page is kept for after it. */
import { Route, Routes } from "react-router-dom";
import { useAuth } from "./auth/AuthProvider";
import { Layout } from "./components/Layout";
import { AuditPage } from "./pages/admin/AuditPage";
import { ModelsPage } from "./pages/admin/ModelsPage";
import { UsersPage } from "./pages/admin/UsersPage";
import { CasePage } from "./pages/CasePage";
import { LoginPage } from "./pages/LoginPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { WorklistPage } from "./pages/WorklistPage";

export function App() {
  const { user } = useAuth();
  if (user === undefined)
    return (
      <p role="status" className="p-6 text-muted">
        Loading…
      </p>
    );
  if (user === null) return <LoginPage />;
  const admin = user.role === "admin";
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<WorklistPage />} />
        <Route path="cases/:caseId" element={<CasePage />} />
        {admin && <Route path="admin/users" element={<UsersPage />} />}
        {admin && <Route path="admin/audit" element={<AuditPage />} />}
        {admin && <Route path="admin/models" element={<ModelsPage />} />}
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
