// gemini-tokens/react: LiveSessionController, the logic behind useLiveSession, and the hook
// itself rendered by react-test-renderer, with a fake fetch and a fake GoogleGenAI.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createElement } from "react";
import TestRenderer from "react-test-renderer";

import { TokenSource } from "../../dist/index.js";
import { LiveSessionController, useLiveSession } from "../../dist/react.js";

function tokenFetch({ refuse } = {}) {
  let n = 0;
  return async () => {
    n += 1;
    if (refuse) {
      return new Response(JSON.stringify({ error: { code: 401, status: "UNAUTHENTICATED", message: refuse } }), { status: 401 });
    }
    const now = Date.now();
    return Response.json({
      name: `auth_tokens/fake-${n}`,
      uses: 1,
      expireTime: new Date(now + 30 * 60_000).toISOString(),
      newSessionExpireTime: new Date(now + 60_000).toISOString(),
      liveUrl: "ws://127.0.0.1:9/ws/x",
      serverTime: new Date(now).toISOString(),
      session: "conversation-1",
    });
  };
}

function fakeGenAI() {
  const world = { sockets: [] };
  class GoogleGenAI {
    constructor(options) {
      this.live = {
        connect: async ({ callbacks }) => {
          const socket = { apiKey: options.apiKey, closed: false, callbacks };
          world.sockets.push(socket);
          await new Promise((r) => setTimeout(r, 5)); // the socket opens in a later task
          callbacks.onmessage({ setupComplete: {} });
          callbacks.onmessage({ sessionResumptionUpdate: { newHandle: "h", resumable: true } });
          return {
            sendClientContent: () => {},
            sendRealtimeInput: () => {},
            sendToolResponse: () => {},
            close: () => {
              socket.closed = true;
              setTimeout(() => callbacks.onclose({ code: 1000, reason: "" }), 1);
            },
          };
        },
      };
    }
  }
  return { GoogleGenAI, world };
}

function settle(ms = 20) {
  return new Promise((r) => setTimeout(r, ms));
}

test("connect(): idle -> connecting -> open with the session; close(): closed, live null", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  const controller = new LiveSessionController(source, { GoogleGenAI, model: "m" });
  const seen = [];
  controller.subscribe(() => seen.push(controller.getSnapshot().state));
  assert.deepEqual(controller.getSnapshot(), { state: "idle", reason: "", live: null });
  const first = controller.connect();
  assert.equal(controller.connect(), first, "a second connect() while connecting shares it");
  const live = await first;
  assert.ok(live);
  const snapshot = controller.getSnapshot();
  assert.equal(snapshot.state, "open");
  assert.equal(snapshot.live, live);
  assert.equal(await controller.connect(), live, "connect() while open is that session");
  assert.equal(world.sockets.length, 1);
  controller.close();
  assert.equal(controller.getSnapshot().state, "closed");
  assert.equal(controller.getSnapshot().live, null);
  assert.equal(seen[0], "connecting");
  assert.ok(seen.includes("open"));
  await settle();
  assert.equal(world.sockets[0].closed, true);
});

test("callbacks are the latest options' (no stale closures)", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  const got = [];
  const controller = new LiveSessionController(source, { GoogleGenAI, model: "m", callbacks: { onmessage: () => got.push("old") } });
  await controller.connect();
  controller.options = { GoogleGenAI, model: "m", callbacks: { onmessage: () => got.push("new") } };
  world.sockets[0].callbacks.onmessage({ serverContent: { turnComplete: true } });
  assert.deepEqual(got, ["old", "new"]); // the first setupComplete went to the first render's
  controller.dispose();
});

test("a refused token: connect() resolves null, state failed with the broker's message", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch({ refuse: "sign in first" }) });
  const controller = new LiveSessionController(source, { GoogleGenAI, model: "m" });
  assert.equal(await controller.connect(), null);
  assert.deepEqual(controller.getSnapshot(), { state: "failed", reason: "sign in first", live: null });
  assert.equal(world.sockets.length, 0);
  controller.close(); // hanging up after a failure keeps the reason on screen
  assert.equal(controller.getSnapshot().state, "failed");
});

test("bad options: failed with the reason, not an unhandled rejection", async () => {
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  const controller = new LiveSessionController(source, { model: "m" });
  assert.equal(await controller.connect(), null);
  assert.equal(controller.getSnapshot().state, "failed");
  assert.match(controller.getSnapshot().reason, /pass GoogleGenAI/);
});

test("unmounted while connecting: the session is closed as soon as it opens, and stays unseen", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  const closes = [];
  const controller = new LiveSessionController(source, { GoogleGenAI, model: "m", callbacks: { onclose: () => closes.push(1) } });
  const pending = controller.connect();
  controller.dispose();
  assert.equal(await pending, null);
  await settle();
  assert.equal(world.sockets.length, 1);
  assert.equal(world.sockets[0].closed, true);
  assert.equal(controller.getSnapshot().state, "closed");
  assert.deepEqual(closes, []);
  assert.equal(await controller.connect(), null, "no new session after unmount");
  controller.attach(); // mounted again (React's StrictMode does this)
  assert.ok(await controller.connect());
  controller.dispose();
});

// react-test-renderer is deprecated (it still runs React 19); it says so once: keep it quiet.
globalThis.IS_REACT_ACT_ENVIRONMENT = true;
const { act } = TestRenderer;
const warn = console.error;
console.error = (...args) => {
  if (!String(args[0]).includes("react-test-renderer is deprecated")) warn(...args);
};

test("useLiveSession renders the state, connects, and closes the socket on unmount", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  const renders = [];
  let api;
  function Chat() {
    api = useLiveSession(source, { GoogleGenAI, model: "m" });
    renders.push(`${api.state}${api.live ? "+live" : ""}`);
    return null;
  }
  let root;
  await act(async () => {
    root = TestRenderer.create(createElement(Chat));
  });
  assert.equal(api.state, "idle");
  const { connect, close } = api;
  let live;
  await act(async () => {
    live = await api.connect();
  });
  assert.ok(live);
  assert.equal(api.state, "open");
  assert.equal(api.live, live);
  assert.equal(api.connect, connect, "connect is stable across renders");
  assert.equal(api.close, close);
  assert.ok(renders.includes("connecting"));
  await act(async () => {
    root.unmount();
  });
  await settle();
  assert.equal(world.sockets.length, 1);
  assert.equal(world.sockets[0].closed, true, "unmounting closed the socket");
  assert.equal(live.state, "closed");
});

test("useLiveSession's close() ends the session: state closed, live null", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  const source = new TokenSource("/token", { fetch: tokenFetch() });
  let api;
  function Chat() {
    api = useLiveSession(source, { GoogleGenAI, model: "m" });
    return null;
  }
  let root;
  await act(async () => {
    root = TestRenderer.create(createElement(Chat));
  });
  await act(async () => {
    await api.connect();
  });
  await act(async () => {
    api.close();
  });
  assert.equal(api.state, "closed");
  assert.equal(api.live, null);
  await settle();
  assert.equal(world.sockets[0].closed, true);
  await act(async () => {
    root.unmount();
  });
});

test("close() after the session failed on its own keeps it failed with the reason", async () => {
  const { GoogleGenAI, world } = fakeGenAI();
  let n = 0;
  const ok = tokenFetch();
  const fetch = async (...args) => {
    n += 1;
    if (n === 2) return Response.json({ error: { code: 403, status: "PERMISSION_DENIED", message: "the conversation's cap" } }, { status: 403 });
    return ok(...args);
  };
  const controller = new LiveSessionController(new TokenSource("/token", { fetch }), { GoogleGenAI, model: "m" });
  await controller.connect();
  world.sockets[0].callbacks.onmessage({ goAway: { timeLeft: "1s" } });
  await settle();
  assert.deepEqual(controller.getSnapshot(), { state: "failed", reason: "the conversation's cap", live: null });
  controller.close();
  assert.equal(controller.getSnapshot().state, "failed");
});
