// VERSION, package.json's version and the Python package's version are one number.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { VERSION } from "../../dist/index.js";

const here = new URL("../../", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", here), "utf8"));
const python = new URL("../gemini_tokens/_version.py", here);

test("VERSION is package.json's version", () => {
  assert.equal(VERSION, pkg.version);
});

test("VERSION is the Python package's version (in the repository)", { skip: !existsSync(python) && "not in the repository" }, () => {
  const match = /__version__\s*=\s*"([^"]+)"/.exec(readFileSync(python, "utf8"));
  assert.ok(match, "gemini_tokens/_version.py has no __version__");
  assert.equal(VERSION, match[1]);
});
