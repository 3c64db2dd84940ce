export function UsersPage() {
  return (
    <div className="p-4">
      <h1 className="text-lg font-semibold">Users</h1>
    </div>
  );
}
