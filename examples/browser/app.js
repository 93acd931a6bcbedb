// A browser client for the Gemini Live API with an ephemeral token. Plain JS, no build.
"use strict";

// REPLACE THIS: however your page proves who the user is (a session cookie is typical).
const AUTH_HEADER = "Bearer demo-user-token";

let token = null; // { name, liveUrl, bidiGenerateContentSetup, ... } from the broker

function log(line) {
  document.getElementById("log").textContent += line + "\n";
}

function show(id, text, cls) {
  const el = document.getElementById(id);
  el.textContent = text;
  if (cls) el.className = cls;
}

// The broker answers errors as {error: {code, status, message}}, with Retry-After on
// 429 and 503.
async function fetchToken() {
  const res = await fetch("/token", {
    method: "POST",
    headers: { Authorization: AUTH_HEADER },
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const message = (body.error || {}).message || `HTTP ${res.status}`;
    const wait = res.headers.get("Retry-After");
    throw new Error(message + (wait ? ` (try again in ${wait}s)` : ""));
  }
  return res.json();
}

// The service may send text or binary frames; both carry JSON.
async function parse(event) {
  const text = typeof event.data === "string" ? event.data : await event.data.text();
  return JSON.parse(text);
}

// Open a Live session with the token. `onReply` gets the first text reply.
function openSession(tok, statusId, onReply) {
  // liveUrl is ...BidiGenerateContentConstrained?access_token=...
  const ws = new WebSocket(tok.liveUrl);
  ws.onopen = () => {
    // The first message must be `setup`. Locked fields take the token's values anyway.
    const model = (tok.bidiGenerateContentSetup || {}).model;
    const generationConfig = { responseModalities: ["TEXT"] };
    ws.send(JSON.stringify({ setup: { model, generationConfig } }));
  };
  ws.onmessage = async (event) => {
    const msg = await parse(event);
    if (msg.setupComplete) {
      show(statusId, "connected", "connected");
      log("setupComplete");
      const turns = [{ role: "user", parts: [{ text: "Hello from the browser" }] }];
      ws.send(JSON.stringify({ clientContent: { turns, turnComplete: true } }));
    }
    const parts = ((msg.serverContent || {}).modelTurn || {}).parts || [];
    for (const part of parts) {
      if (part.text) onReply(part.text);
    }
    if (msg.serverContent && msg.serverContent.turnComplete) ws.close(1000, "done");
  };
  ws.onclose = (event) => {
    log(`closed: ${event.code} ${event.reason}`);
    if (event.code !== 1000) {
      show(statusId, `refused (${event.code}): ${event.reason}`, "refused");
    }
  };
  ws.onerror = () => log("websocket error");
  return ws;
}

document.getElementById("connect").addEventListener("click", async () => {
  try {
    show("status", "fetching a token...");
    token = await fetchToken();
    show("status", "connecting...");
    openSession(token, "status", (text) => {
      show("reply", text);
      document.getElementById("again").disabled = false;
    });
  } catch (err) {
    show("status", String(err), "refused");
  }
});

// A single-use token cannot open a second session: the service refuses it.
document.getElementById("again").addEventListener("click", () => {
  show("second", "connecting...");
  openSession(token, "second", (text) => show("second", "accepted?! " + text));
});
