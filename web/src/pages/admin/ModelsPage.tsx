export function ModelsPage() {
  return (
    <div className="p-4">
      <h1 className="text-lg font-semibold">Models</h1>
    </div>
  );
}
