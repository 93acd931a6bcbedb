// `npm version X` runs this after setting package.json's version: src/version.ts follows, so
// VERSION, package.json and (checked by test/unit/version.test.mjs) the wheel agree.
import { readFileSync, writeFileSync } from "node:fs";

const root = new URL("../", import.meta.url);
const { version } = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));
const text = `/** The package's version: the same as the Python package gemini-tokens it comes with. */
export const VERSION = ${JSON.stringify(version)};
`;
writeFileSync(new URL("src/version.ts", root), text);
console.log(`src/version.ts: VERSION = ${version}`);
