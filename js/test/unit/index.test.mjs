// TokenSource's and connectLive's rules on dist/index.js, what `import "gemini-tokens"` loads.
import * as module from "../../dist/index.js";
import { defineTests } from "./rules.mjs";

defineTests(module);
