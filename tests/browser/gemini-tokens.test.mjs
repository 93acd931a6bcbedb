// The rules of TokenSource and connectLive (js/test/unit/rules.mjs, the npm package's unit
// tests) run on the copy the broker serves and the wheel ships,
// gemini_tokens/broker/static/gemini-tokens.js: the build of js/, copied by
// tools/build_js.py. tests/test_browser.py runs this file with `node --test`; the
// real-browser test (tests/test_browser.py, page in tests/browser/page.js) covers the real
// @google/genai.
import * as shipped from "../../gemini_tokens/broker/static/gemini-tokens.js";
import { defineTests } from "../../js/test/unit/rules.mjs";

defineTests(shipped);
