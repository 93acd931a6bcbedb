// What a user installs: `npm pack` the package, install the tarball into a fresh project
// with TypeScript, and check that
//   - the tarball holds dist/ (JS and .d.ts of every entry), README.md and package.json only;
//   - the built JS imports nothing but its own files (and react, from gemini-tokens/react);
//   - a consumer file importing all three entries passes `tsc --strict --noEmit`, with
//     moduleResolution "nodenext" and "bundler", resolving through the exports map;
//   - the entries load in Node;
//   - a fresh Vite + TypeScript project (Vite's own template settings) type-checks the same
//     consumer with `tsc --strict --noEmit` and builds it with `vite build`.
// Run after `npm run build`. Needs the npm registry (or npm's cache) for the consumer's
// TypeScript, @google/genai and React: the versions of this package's devDependencies.
import { execSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { build } from "esbuild";

const root = new URL("../", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const dev = pkg.devDependencies;
const work = mkdtempSync(join(tmpdir(), "gemini-tokens-pack-"));
// The Vite the example app (examples/voice-app) pins.
const VITE = "8.4.1";
const failures = [];

function run(command, cwd) {
  return execSync(command, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function check(ok, message) {
  console.log(`${ok ? "ok  " : "FAIL"} ${message}`);
  if (!ok) failures.push(message);
}

try {
  if (pkg.dependencies && Object.keys(pkg.dependencies).length) {
    check(false, `no runtime dependencies (has ${Object.keys(pkg.dependencies).join(", ")})`);
  }
  const [packed] = JSON.parse(run(`npm pack --json --pack-destination "${work}"`, root));
  const files = packed.files.map((f) => f.path).sort();
  const tarball = join(work, packed.filename);
  console.log(`packed ${packed.filename}: ${files.length} files, ${(packed.size / 1024).toFixed(1)} KB`);
  for (const entry of ["index", "audio", "react"]) {
    check(files.includes(`dist/${entry}.js`) && files.includes(`dist/${entry}.d.ts`), `dist/${entry}.js and .d.ts are in it`);
  }
  check(files.includes("dist/gemini-tokens.js"), "the single-file build dist/gemini-tokens.js is in it");
  check(files.includes("README.md"), "README.md is in it");
  const stray = files.filter((f) => !f.startsWith("dist/") && !["README.md", "package.json", "LICENSE"].includes(f));
  check(stray.length === 0, `nothing but dist/, README.md and package.json${stray.length ? `: ${stray.join(", ")}` : ""}`);

  for (const file of files.filter((f) => f.endsWith(".js"))) {
    // esbuild lists what a file imports from outside (comments do not count).
    const result = await build({
      entryPoints: [join(root, file)],
      bundle: true,
      packages: "external",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports);
    const foreign = imports.filter((i) => i.external && !(file === "dist/react.js" && i.path === "react")).map((i) => i.path);
    check(foreign.length === 0, `${file} imports only its own files${foreign.length ? ` (not ${foreign.join(", ")})` : ""}`);
  }

  const consumer = join(work, "consumer");
  execSync(`mkdir "${consumer}"`);
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  const installs = [
    `"${tarball}"`,
    `typescript@${dev.typescript}`,
    `@google/genai@${dev["@google/genai"]}`,
    `react@${dev.react}`,
    `@types/react@${dev["@types/react"]}`,
    `vite@${VITE}`,
  ];
  run(`npm install --no-audit --no-fund --prefer-offline --loglevel=error ${installs.join(" ")}`, consumer);
  writeFileSync(
    join(consumer, "consumer.ts"),
    `import { GoogleGenAI, Modality } from "@google/genai";
import { createElement, type ReactElement } from "react";
import { TokenSource, TokenError, STATES, VERSION, connectLive, type BrokerToken, type LiveState } from "gemini-tokens";
import { Microphone, Player, floatTo16BitPCM } from "gemini-tokens/audio";
import { useLiveSession } from "gemini-tokens/react";

const source = new TokenSource("/token", { headers: { Authorization: "Bearer x" }, retries: 2 });

export async function talk(): Promise<void> {
  const token: BrokerToken = await source.get();
  const player = new Player();
  const live = await connectLive(source, {
    GoogleGenAI,
    model: "gemini-live-2.5-flash-preview",
    config: { responseModalities: [Modality.AUDIO] },
    callbacks: {
      onmessage: (message) => {
        if (message.serverContent?.interrupted) player.interrupt();
        for (const part of message.serverContent?.modelTurn?.parts ?? []) player.play(part.inlineData);
      },
    },
    onstatechange: (state: LiveState, reason: string) => console.log(state, reason),
  });
  const microphone = await Microphone.start({ live });
  microphone.stop();
  live.close();
  console.log(token.expireTime, STATES, VERSION, floatTo16BitPCM(new Float32Array(1)));
}

export function Status(): ReactElement {
  const { state, reason, connect } = useLiveSession(source, { GoogleGenAI, model: "m" });
  return createElement("button", { onClick: () => void connect() }, state === "failed" ? reason : state);
}

export const isTokenError = (err: unknown): boolean => err instanceof TokenError;
`,
  );
  for (const resolution of ["nodenext", "bundler"]) {
    const module = resolution === "bundler" ? "esnext" : "nodenext";
    writeFileSync(
      join(consumer, `tsconfig.${resolution}.json`),
      JSON.stringify({
        compilerOptions: { target: "ES2022", lib: ["ES2022", "DOM"], module, moduleResolution: resolution, skipLibCheck: false },
        files: ["consumer.ts"],
      }),
    );
    try {
      run(`npx --no-install tsc --strict --noEmit -p tsconfig.${resolution}.json`, consumer);
      check(true, `tsc --strict --noEmit (moduleResolution ${resolution}) on a consumer of the three entries`);
    } catch (err) {
      check(false, `tsc --strict --noEmit (moduleResolution ${resolution}):\n${err.stdout}${err.stderr}`);
    }
  }
  // What `npm create vite` (vanilla-ts) writes, in short: a page, a module, its tsconfig.
  writeFileSync(
    join(consumer, "index.html"),
    `<!doctype html><html><body><script type="module" src="/consumer.ts"></script></body></html>`,
  );
  writeFileSync(
    join(consumer, "tsconfig.vite.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        useDefineForClassFields: true,
        module: "ESNext",
        lib: ["ES2022", "DOM", "DOM.Iterable"],
        types: ["vite/client"],
        skipLibCheck: true,
        moduleResolution: "bundler",
        allowImportingTsExtensions: true,
        verbatimModuleSyntax: true,
        moduleDetection: "force",
        noEmit: true,
        strict: true,
        noUnusedLocals: true,
        noUnusedParameters: true,
        noFallthroughCasesInSwitch: true,
      },
      files: ["consumer.ts"],
    }),
  );
  try {
    run("npx --no-install tsc --strict --noEmit -p tsconfig.vite.json", consumer);
    check(true, "tsc --strict --noEmit with a fresh Vite + TypeScript project's settings");
  } catch (err) {
    check(false, `tsc in a Vite + TypeScript project:\n${err.stdout}${err.stderr}`);
  }
  try {
    run("npx --no-install vite build --logLevel error", consumer);
    check(true, `vite build (Vite ${VITE}) of a page importing the three entries`);
  } catch (err) {
    check(false, `vite build:\n${err.stdout}${err.stderr}`);
  }
  const smoke = `import { VERSION, TokenSource } from "gemini-tokens";
import { floatTo16BitPCM } from "gemini-tokens/audio";
import { useLiveSession } from "gemini-tokens/react";
if (VERSION !== ${JSON.stringify(pkg.version)}) throw new Error("VERSION " + VERSION);
if (typeof TokenSource !== "function" || typeof useLiveSession !== "function") throw new Error("exports");
if (floatTo16BitPCM(new Float32Array([1]))[0] !== 32767) throw new Error("audio");`;
  writeFileSync(join(consumer, "smoke.mjs"), smoke);
  try {
    run("node smoke.mjs", consumer);
    check(true, "the three entries load in Node from the installed tarball");
  } catch (err) {
    check(false, `the entries do not load: ${err.stderr}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`pack:check: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("pack:check: all checks passed");
