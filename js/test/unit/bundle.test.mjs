// The same rules on dist/gemini-tokens.js, the single file the broker serves; and it exports
// what the package's main entry exports, with no import left in it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as bundle from "../../dist/gemini-tokens.js";
import * as module from "../../dist/index.js";
import { defineTests } from "./rules.mjs";

defineTests(bundle);

test("the bundle exports what the main entry exports, and imports nothing", () => {
  assert.deepEqual(Object.keys(bundle).sort(), Object.keys(module).sort());
  assert.equal(bundle.VERSION, module.VERSION);
  const text = readFileSync(new URL("../../dist/gemini-tokens.js", import.meta.url), "utf8");
  assert.doesNotMatch(text, /^\s*import\b|\bimport\(|\brequire\(/m);
});
