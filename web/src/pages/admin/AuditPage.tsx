export function AuditPage() {
  return (
    <div className="p-4">
      <h1 className="text-lg font-semibold">Audit</h1>
    </div>
  );
}
