// Bundles the app into one ES module (dist/worker.js) with an external source map.
import { build } from "esbuild";

await build({
  entryPoints: ["src/index.jsx"],
  outfile: "dist/worker.js",
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  mainFields: ["module", "main"],
  conditions: ["worker", "browser"],
  sourcemap: true,
  minify: false,
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
});
