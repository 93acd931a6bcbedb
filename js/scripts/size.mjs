// The size budget, a benchmark rather than a test: each entry point as an app's bundler would
// ship it (bundled, minified, peers left out), gzipped; printed against its budget, and a
// non-zero exit when one is over. Run after `npm run build`.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

import { build } from "esbuild";

const KB = 1024;
const ENTRIES = [
  { name: "gemini-tokens", file: "dist/index.js", budget: 10 * KB },
  { name: "gemini-tokens/audio", file: "dist/audio.js", budget: 6 * KB },
  // The hook bundles connectLive and TokenSource too: the main budget and 1 KB for itself.
  { name: "gemini-tokens/react", file: "dist/react.js", budget: 11 * KB },
];

const root = new URL("../", import.meta.url);
let over = 0;
console.log("entry                  min+gzip   budget   minified");
for (const { name, file, budget } of ENTRIES) {
  const path = new URL(file, root).pathname;
  readFileSync(path); // a clear ENOENT when the build has not run
  const result = await build({
    entryPoints: [path],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    external: ["@google/genai", "react"],
    write: false,
    legalComments: "none",
    logLevel: "warning",
  });
  const code = result.outputFiles[0].contents;
  const gzipped = gzipSync(code, { level: 9 }).length;
  const ok = gzipped <= budget;
  if (!ok) over += 1;
  const kb = (n) => `${(n / KB).toFixed(2)} KB`.padStart(9);
  console.log(`${name.padEnd(22)} ${kb(gzipped)} ${kb(budget)} ${kb(code.length)}  ${ok ? "ok" : "OVER BUDGET"}`);
}
if (over) {
  console.error(`${over} entry point(s) over budget`);
  process.exit(1);
}
