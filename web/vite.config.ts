/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import tailwindcss from "@tailwindcss/vite";
import { defineConfig } from "vite";

// The control plane serves web/dist at "/" (same origin as /api), so the dev server
// proxies the API to a running `medvision serve` instead of enabling CORS there.
const api = process.env.MEDVISION_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react(), tailwindcss()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
  },
  // Cornerstone's DICOM image loader decodes in module workers that load WebAssembly codecs.
  worker: { format: "es" },
  optimizeDeps: {
    // Not pre-bundled: the loader finds its worker and the codecs' .wasm files with
    // new URL(..., import.meta.url), which must stay relative to its own files.
    exclude: ["@cornerstonejs/dicom-image-loader"],
    // ...so its CommonJS dependencies are pre-bundled here by name, or the dev server would
    // serve them as they are (the Emscripten codec factories have no ES default export).
    include: [
      "dicom-parser",
      "pako",
      "@cornerstonejs/codec-charls/decodewasmjs",
      "@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs",
      "@cornerstonejs/codec-libjxl/decodewasmjs",
      "@cornerstonejs/codec-openjpeg/decodewasmjs",
      "@cornerstonejs/codec-openjph/wasmjs",
    ],
  },
  server: {
    proxy: { "/api": api, "/health": api, "/ready": api, "/schema": api },
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
  },
});
