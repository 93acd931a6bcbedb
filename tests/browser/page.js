// The real-browser test's page (tests/test_browser.py): bundled with esbuild together with
// the real @google/genai from npm and the helper, served by a broker app (aiohttp adapter).
import { GoogleGenAI } from "@google/genai";

import { TokenSource, connectLive } from "../../gemini_tokens/broker/static/gemini-tokens.js";

const MODEL = "gemini-2.5-flash-native-audio-preview-12-2025";

const $ = (id) => document.getElementById(id);

function item(list, text) {
  const li = document.createElement("li");
  li.textContent = text;
  $(list).appendChild(li);
}

// What the test reads back (besides the page's text).
const record = { states: [], replies: [], retries: [], closes: 0, error: null };
window.record = record;

let live = null;
let reply = "";

// tokenUrl: the broker's endpoint, "/token" on this page's origin unless another is given
// (a `gemini-tokens serve` process on an origin of its own, which must allow this page's).
window.connect = async (user, tokenUrl = "/token") => {
  const source = new TokenSource(tokenUrl, {
    headers: { Authorization: `Bearer ${user}` },
    onretry: ({ status, delayMs, attempt, message }) => {
      record.retries.push({ status, delayMs, attempt, message });
      $("notice").textContent = `broker busy (${status}: ${message}); retry ${attempt} in ${(delayMs / 1000).toFixed(1)} s`;
    },
  });
  try {
    live = await connectLive(source, {
      GoogleGenAI,
      model: MODEL,
      config: { responseModalities: ["TEXT"] },
      callbacks: {
        onmessage: (msg) => {
          const content = msg.serverContent;
          if (!content) return;
          for (const part of (content.modelTurn && content.modelTurn.parts) || []) {
            if (part.text) reply += part.text;
          }
          if (content.turnComplete) {
            record.replies.push(reply);
            item("turns", `model: ${reply}`);
            reply = "";
          }
        },
        onclose: () => {
          record.closes += 1;
        },
      },
      onstatechange: (state, reason) => {
        record.states.push([state, reason]);
        $("state").textContent = state;
        $("state").className = state;
        $("reason").textContent = reason ? `(${reason})` : "";
        item("states", `${state}: ${reason}`);
        if (state === "open") $("notice").textContent = "";
      },
    });
    return "open";
  } catch (err) {
    record.error = { name: err.name, message: err.message, status: err.status ?? null };
    $("notice").textContent = `could not connect: ${err.message}`;
    return `error: ${err.message}`;
  }
};

window.say = (text) => {
  item("turns", `user: ${text}`);
  live.sendClientContent({ turns: [{ role: "user", parts: [{ text }] }], turnComplete: true });
};

window.hangUp = () => live.close();

// The helper as the broker serves it, imported as a module (not bundled).
window.servedHelper = async () => {
  const served = await import("/token/client.js");
  return Object.keys(served).sort();
};
