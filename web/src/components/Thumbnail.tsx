/** A small preview of one DICOM image of the case (the server's rendered first frame). */
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { fetchBinary } from "../api/client";

export function Thumbnail({ caseId, instanceId, label }: { caseId: string; instanceId: string; label: string }) {
  const frame = useQuery({
    queryKey: ["thumbnail", caseId, instanceId],
    queryFn: async () => (await fetchBinary(`/api/cases/${caseId}/instances/${instanceId}/frames/0`)).blob(),
    staleTime: Infinity,
  });
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!frame.data) return;
    const objectUrl = URL.createObjectURL(frame.data);
    setUrl(objectUrl);
    return () => URL.revokeObjectURL(objectUrl);
  }, [frame.data]);
  if (frame.isError) return <span className="flex h-16 w-16 items-center justify-center text-xs text-danger">no preview</span>;
  if (!url) return <span className="h-16 w-16 animate-pulse bg-raised" aria-hidden="true" />;
  return <img src={url} alt={label} className="h-16 w-16 object-contain" />;
}
