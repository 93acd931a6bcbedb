// The rules of TokenSource and connectLive, in Node (node --test), with a fake fetch and a fake
// GoogleGenAI. Ported from tests/browser/gemini-tokens.test.mjs (which tests the served copy).
// defineTests(module) declares them against one build: index.test.mjs runs them on
// dist/index.js (what `import "gemini-tokens"` loads), bundle.test.mjs on the single-file
// dist/gemini-tokens.js the broker serves. Run `npm run build` first.
import assert from "node:assert/strict";
import { test } from "node:test";

/**
 * Declare the tests against one build of the main entry.
 * @param {typeof import("../../dist/index.js")} module
 */
export function defineTests(module) {
  const { STATES, STATUS_NAMES, TokenError, TokenSource, connectLive, parseRetryAfter } = module;

  const HOUR = 3_600_000;

  function json(status, body, headers = {}) {
    return new Response(JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json", ...headers },
    });
  }

  function tokenAnswer(n, { serverTime, expireTime, newSessionExpireTime } = {}) {
    const now = Date.now();
    return {
      name: `auth_tokens/fake-${n}`,
      uses: 1,
      expireTime: expireTime ?? new Date(now + 30 * 60_000).toISOString(),
      newSessionExpireTime: newSessionExpireTime ?? new Date(now + 60_000).toISOString(),
      liveUrl: `ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token=auth_tokens/fake-${n}`,
      serverTime: serverTime ?? new Date(now).toISOString(),
      session: "conversation-1",
    };
  }

  // A fetch that answers from a list and records what it was sent.
  function scriptedFetch(answers) {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, init, body: JSON.parse(init.body) });
      const next = answers.shift();
      if (next === undefined) throw new Error("no more scripted answers");
      if (next instanceof Error) throw next;
      return typeof next === "function" ? next() : next;
    };
    return { fetch, calls };
  }

  // sleep() that records the delays and does not wait.
  function fakeSleep() {
    const delays = [];
    const sleep = async (ms) => {
      delays.push(ms);
    };
    return { sleep, delays };
  }

  test("get() posts the config with the app's headers and returns the answer", async () => {
    const { fetch, calls } = scriptedFetch([json(200, tokenAnswer(1))]);
    const source = new TokenSource("/token", {
      fetch,
      headers: { Authorization: "Bearer u1" },
      config: { temperature: 0.5 },
    });
    const token = await source.get();
    assert.equal(token.name, "auth_tokens/fake-1");
    assert.equal(source.token, token);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, "/token");
    assert.equal(calls[0].init.method, "POST");
    assert.equal(calls[0].init.headers.Authorization, "Bearer u1");
    assert.equal(calls[0].init.headers["Content-Type"], "application/json");
    assert.deepEqual(calls[0].body, { config: { temperature: 0.5 } });
  });

  test("headers may be a function, read on every request", async () => {
    let n = 0;
    const { fetch, calls } = scriptedFetch([json(200, tokenAnswer(1)), json(200, tokenAnswer(2))]);
    const source = new TokenSource("/token", { fetch, headers: async () => ({ "X-N": String(++n) }) });
    await source.get();
    await source.renew();
    assert.deepEqual(
      calls.map((c) => c.init.headers["X-N"]),
      ["1", "2"],
    );
  });

  test("headers may be a Headers object", async () => {
    const { fetch, calls } = scriptedFetch([json(200, tokenAnswer(1))]);
    await new TokenSource("/token", { fetch, headers: new Headers({ Authorization: "Bearer h" }) }).get();
    assert.equal(calls[0].init.headers.authorization, "Bearer h");
  });

  test("renew() posts the conversation's session; without one it is get()", async () => {
    const { fetch, calls } = scriptedFetch([json(200, { ...tokenAnswer(1), session: undefined }), json(200, tokenAnswer(2)), json(200, tokenAnswer(3))]);
    const source = new TokenSource("/token", { fetch });
    await source.renew();
    assert.deepEqual(calls[0].body, {});
    await source.get();
    await source.renew();
    assert.deepEqual(calls[2].body, { renew: "conversation-1" });
  });

  test("one fetch in flight: concurrent calls of a kind share it, another kind waits", async () => {
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    let inFlight = 0;
    let most = 0;
    const calls = [];
    const fetch = async (url, init) => {
      calls.push(JSON.parse(init.body));
      inFlight += 1;
      most = Math.max(most, inFlight);
      await gate;
      inFlight -= 1;
      return json(200, tokenAnswer(calls.length));
    };
    const source = new TokenSource("/token", { fetch });
    const a = source.get();
    const b = source.get();
    const c = source.renew(); // no session yet: a get(), shared too
    assert.equal(a, b);
    assert.equal(a, c);
    setTimeout(release, 5);
    const [ta, tb] = await Promise.all([a, b]);
    assert.equal(ta, tb);
    assert.equal(calls.length, 1);
    const r1 = source.renew();
    const g = source.get(); // waits for the renewal
    const r2 = source.renew(); // shares the queued get? no: the kinds alternate, so it queues
    await Promise.all([r1, g, r2]);
    assert.equal(most, 1);
    assert.deepEqual(calls.slice(1).map((b) => Object.keys(b)[0] ?? "get"), ["renew", "get", "renew"]);
  });

  for (const status of [401, 403]) {
    test(`${status} is final: one request, a TokenError with the broker's message`, async () => {
      const { fetch, calls } = scriptedFetch([
        json(status, { error: { code: status, status: status === 401 ? "UNAUTHENTICATED" : "PERMISSION_DENIED", message: "sign in first" } }),
      ]);
      const { sleep, delays } = fakeSleep();
      const source = new TokenSource("/token", { fetch, sleep });
      await assert.rejects(source.get(), (err) => {
        assert.ok(err instanceof TokenError);
        assert.equal(err.status, status);
        assert.equal(err.retryable, false);
        assert.equal(err.message, "sign in first");
        assert.equal(err.code, status === 401 ? "UNAUTHENTICATED" : "PERMISSION_DENIED");
        return true;
      });
      assert.equal(calls.length, 1);
      assert.deepEqual(delays, []);
    });
  }

  test("a 400 is final too; a body that is not JSON gets a message from the status", async () => {
    const { fetch } = scriptedFetch([new Response("<html>nope</html>", { status: 400 })]);
    const source = new TokenSource("/token", { fetch, sleep: fakeSleep().sleep });
    await assert.rejects(source.get(), { name: "TokenError", status: 400, code: "INVALID_ARGUMENT", message: "the token endpoint answered 400" });
  });

  for (const status of [429, 503]) {
    test(`${status} waits Retry-After plus jitter, never less, then succeeds`, async () => {
      const busy = () => json(status, { error: { code: status, message: "busy" } }, { "Retry-After": "2" });
      const { fetch, calls } = scriptedFetch([busy, busy, json(200, tokenAnswer(1))]);
      const { sleep, delays } = fakeSleep();
      const seen = [];
      const randoms = [0, 1];
      const source = new TokenSource("/token", {
        fetch,
        sleep,
        random: () => randoms.shift(),
        onretry: (info) => seen.push(info),
      });
      const token = await source.get();
      assert.equal(token.name, "auth_tokens/fake-1");
      assert.equal(calls.length, 3);
      assert.deepEqual(delays, [2000, 2400]); // 2 s, and 2 s plus the most jitter (20 %)
      assert.deepEqual(
        seen.map((s) => [s.status, s.attempt, s.message]),
        [
          [status, 1, "busy"],
          [status, 2, "busy"],
        ],
      );
    });
  }

  test("Retry-After as an HTTP date is judged on the answer's Date, not the local clock", () => {
    const date = "Tue, 01 Dec 2026 10:00:00 GMT";
    const when = "Tue, 01 Dec 2026 10:00:05 GMT";
    const localNow = Date.parse(date) - 3 * HOUR; // a browser clock 3 h behind
    assert.equal(parseRetryAfter(when, date, localNow), 5000);
    assert.equal(parseRetryAfter("1.5", null, 0), 1500);
    assert.equal(parseRetryAfter("soon", null, 0), undefined);
    assert.equal(parseRetryAfter(null, null, 0), undefined);
  });

  test("busy until the retries run out: a retryable TokenError", async () => {
    const busy = () => json(503, { error: { code: 503, message: "down" } }, { "Retry-After": "1" });
    const { fetch, calls } = scriptedFetch([busy, busy, busy]);
    const source = new TokenSource("/token", { fetch, retries: 2, sleep: fakeSleep().sleep });
    await assert.rejects(source.get(), { name: "TokenError", status: 503, retryable: true, retryAfterMs: 1000 });
    assert.equal(calls.length, 3);
  });

  test("network errors back off exponentially (with jitter), then succeed", async () => {
    const down = new TypeError("Failed to fetch");
    const { fetch, calls } = scriptedFetch([down, down, down, json(200, tokenAnswer(1))]);
    const { sleep, delays } = fakeSleep();
    const source = new TokenSource("/token", { fetch, sleep, random: () => 1, backoffMs: 100 });
    await source.get();
    assert.equal(calls.length, 4);
    assert.deepEqual(delays, [100, 200, 400]);
  });

  test("a 500 backs off like a network error; unreachable to the end is retryable", async () => {
    const down = new TypeError("Failed to fetch");
    const { fetch } = scriptedFetch([json(500, { error: { code: 500, message: "internal" } }), down, down]);
    const { sleep, delays } = fakeSleep();
    const source = new TokenSource("/token", { fetch, sleep, retries: 2, random: () => 0, backoffMs: 100 });
    await assert.rejects(source.get(), { name: "TokenError", status: 0, code: "UNAVAILABLE", retryable: true });
    assert.deepEqual(delays, [50, 100]);
  });

  test("an aborted request stops retrying", async () => {
    const controller = new AbortController();
    const busy = () => json(503, { error: { code: 503, message: "down" } }, { "Retry-After": "60" });
    const { fetch, calls } = scriptedFetch([busy, busy]);
    const source = new TokenSource("/token", { fetch });
    const pending = source.get({ signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(pending, { name: "AbortError" });
    assert.equal(calls.length, 1);
  });

  test("token times are judged on the broker's clock (serverTime), not the browser's", async () => {
    const local = 1_000_000_000_000;
    const server = local + 2 * HOUR; // the browser's clock is two hours behind
    const answer = tokenAnswer(1, {
      serverTime: new Date(server).toISOString(),
      expireTime: new Date(server + 10 * 60_000).toISOString(),
    });
    const { fetch } = scriptedFetch([json(200, answer)]);
    const source = new TokenSource("/token", { fetch, now: () => local });
    await source.get();
    assert.equal(source.serverNow(), server);
    assert.equal(source.msUntil(answer.expireTime), 10 * 60_000);
  });

  test("an answer without a token is an error, not a token", async () => {
    const { fetch } = scriptedFetch([json(200, { hello: 1 })]);
    await assert.rejects(new TokenSource("/token", { fetch }).get(), { name: "TokenError", message: /holds no token/ });
  });

  test("bad options are refused naming the option", () => {
    assert.throws(() => new TokenSource(42), /url must be/);
    assert.throws(() => new TokenSource("/t", { headers: "x" }), /headers must be/);
    assert.throws(() => new TokenSource("/t", { config: [1] }), /config must be/);
    assert.throws(() => new TokenSource("/t", { retries: -1 }), /retries must be/);
  });

  // ---------------------------------------------------------------- connectLive, fake SDK

  class FakeLive {
    constructor(world, options) {
      this.world = world;
      this.options = options;
    }

    async connect(params) {
      const world = this.world;
      const record = { apiKey: this.options.apiKey, httpOptions: this.options.httpOptions, params, sent: [], closed: false };
      world.connects.push(record);
      world.log.push(`connect ${record.apiKey} handle=${params.config.sessionResumption.handle ?? "-"}`);
      const open = world.sockets.filter((s) => !s.closed);
      if (open.length) world.log.push("ERROR: connected while another socket was open");
      const failure = world.refuse.shift();
      if (failure) {
        record.closed = true;
        params.callbacks.onclose({ code: failure.code, reason: failure.reason });
        throw new Error(`Live connection closed before setup completed (code ${failure.code}): ${failure.reason}`);
      }
      world.sockets.push(record);
      const cb = params.callbacks;
      record.serverSend = (msg) => cb.onmessage(msg);
      record.serverClose = (code, reason) => {
        if (record.closed) return;
        record.closed = true;
        world.log.push(`closed ${record.apiKey} ${code}`);
        cb.onclose({ code, reason });
      };
      cb.onmessage({ setupComplete: {} });
      record.serverSend({ sessionResumptionUpdate: { newHandle: `h${world.connects.length}-0`, resumable: true } });
      return {
        sendClientContent: (p) => record.sent.push(["clientContent", p]),
        sendRealtimeInput: (p) => record.sent.push(["realtimeInput", p]),
        sendToolResponse: (p) => record.sent.push(["toolResponse", p]),
        close: () => {
          world.log.push(`close() ${record.apiKey}`);
          // The close event comes later, as a browser's does.
          setTimeout(() => record.serverClose(1005, ""), 15);
        },
      };
    }
  }

  function fakeGenAI() {
    const world = { connects: [], sockets: [], log: [], refuse: [] };
    class GoogleGenAI {
      constructor(options) {
        this.live = new FakeLive(world, options);
      }
    }
    return { GoogleGenAI, world };
  }

  function brokerFetch(answers) {
    // Tokens numbered in order; answers[i] may replace the i-th answer.
    let n = 0;
    const calls = [];
    const fetch = async (url, init) => {
      const body = JSON.parse(init.body);
      calls.push(body);
      n += 1;
      const special = answers && answers[n - 1];
      if (special) return typeof special === "function" ? special() : special;
      return json(200, tokenAnswer(n));
    };
    return { fetch, calls };
  }

  function until(predicate, what) {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const tick = () => {
        if (predicate()) resolve();
        else if (Date.now() - started > 2000) reject(new Error(`timed out waiting for ${what}`));
        else setTimeout(tick, 2);
      };
      tick();
    });
  }

  test("connectLive opens with the token as key, v1alpha, the liveUrl's host and resumption on", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const { fetch } = brokerFetch();
    const states = [];
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      config: { responseModalities: ["TEXT"] },
      onstatechange: (state, reason) => states.push(`${state}: ${reason}`),
    });
    assert.equal(live.state, "open");
    assert.deepEqual(states, ["connecting: fetching a token", "connecting: opening the session", "open: connected"]);
    const [first] = world.connects;
    assert.equal(first.apiKey, "auth_tokens/fake-1");
    assert.deepEqual(first.httpOptions, { apiVersion: "v1alpha", baseUrl: "http://127.0.0.1:9" });
    assert.equal(first.params.model, "m");
    assert.deepEqual(first.params.config, { responseModalities: ["TEXT"], sessionResumption: {} });
    live.sendClientContent({ turns: "hi" });
    assert.deepEqual(first.sent, [["clientContent", { turns: "hi" }]]);
  });

  test("goAway: renew, close the old socket and wait for it, resume with the latest handle", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const { fetch, calls } = brokerFetch();
    const states = [];
    const seen = [];
    let opens = 0;
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      callbacks: { onmessage: (m) => seen.push(Object.keys(m)[0]), onopen: () => opens++ },
      onstatechange: (state, reason) => states.push(`${state}: ${reason}`),
    });
    const [first] = world.connects;
    first.serverSend({ sessionResumptionUpdate: { newHandle: "latest", resumable: true } });
    first.serverSend({ sessionResumptionUpdate: { resumable: false } }); // keeps "latest"
    first.serverSend({ goAway: { timeLeft: "5s" } });
    live.sendClientContent({ turns: "during" }); // queued while resuming
    live.sendRealtimeInput({ text: "also" });
    await until(() => live.state === "open" && world.connects.length === 2, "the resume");
    assert.deepEqual(calls, [{}, { renew: "conversation-1" }]);
    assert.deepEqual(world.log, [
      "connect auth_tokens/fake-1 handle=-",
      "close() auth_tokens/fake-1",
      "closed auth_tokens/fake-1 1005",
      "connect auth_tokens/fake-2 handle=latest",
    ]);
    const second = world.connects[1];
    assert.deepEqual(second.sent, [
      ["clientContent", { turns: "during" }],
      ["realtimeInput", { text: "also" }],
    ]);
    assert.equal(live.connections, 2);
    assert.equal(opens, 1);
    // One continuous session for the app: one setupComplete, no goAway, no resumption updates.
    assert.deepEqual(seen, ["setupComplete"]);
    assert.deepEqual(states.slice(3), ["resuming: the service sent goAway (time left 5s)", "open: resumed after the service sent goAway (time left 5s)"]);
  });

  test("an unexpected close resumes too; a messages in flight on the old socket still reach the app", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const { fetch } = brokerFetch();
    const seen = [];
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      callbacks: { onmessage: (m) => seen.push(m) },
    });
    const [first] = world.connects;
    first.serverSend({ serverContent: { modelTurn: { parts: [{ text: "a" }] } } });
    first.serverClose(1011, "internal");
    await until(() => live.state === "open" && world.connects.length === 2, "the resume");
    assert.equal(world.connects[1].params.config.sessionResumption.handle, "h1-0");
    assert.equal(seen.length, 2);
  });

  test("a renewal refused (the cap) fails the session with the broker's reason; onclose once", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const cap = json(403, { error: { code: 403, status: "PERMISSION_DENIED", message: "this conversation reached its 10-minute limit" } });
    const { fetch } = brokerFetch([null, cap]);
    const states = [];
    const closes = [];
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      callbacks: { onclose: (e) => closes.push(e) },
      onstatechange: (state, reason) => states.push(`${state}: ${reason}`),
    });
    world.connects[0].serverSend({ goAway: { timeLeft: "1s" } });
    await until(() => closes.length === 1, "the close");
    assert.equal(live.state, "failed");
    assert.equal(live.reason, "this conversation reached its 10-minute limit");
    assert.equal(states.at(-1), "failed: this conversation reached its 10-minute limit");
    assert.equal(world.connects.length, 1);
    assert.equal(world.connects[0].closed, true);
    assert.throws(() => live.sendClientContent({ turns: "x" }), /failed: this conversation/);
  });

  test("a resume whose connect is refused is tried again with a fresh renewal", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const { fetch, calls } = brokerFetch();
    const live = await connectLive(new TokenSource("/token", { fetch }), { GoogleGenAI, model: "m" });
    world.refuse.push({ code: 1011, reason: "Token has been used too many times" });
    world.connects[0].serverSend({ goAway: {} });
    await until(() => live.state === "open" && world.connects.length === 3, "the second resume");
    assert.equal(calls.length, 3);
    assert.equal(world.connects[2].apiKey, "auth_tokens/fake-3");
  });

  test("the first connect refused: connectLive rejects and the state is failed", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    world.refuse.push({ code: 1008, reason: "Auth token not found." });
    const states = [];
    await assert.rejects(
      connectLive(new TokenSource("/token", { fetch: brokerFetch().fetch }), {
        GoogleGenAI,
        model: "m",
        onstatechange: (s, r) => states.push(`${s}: ${r}`),
      }),
      /Auth token not found/,
    );
    assert.match(states.at(-1), /^failed: .*Auth token not found/);
  });

  test("a signed-out user (401) at the start: rejected with the message, no socket", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const { fetch, calls } = brokerFetch([json(401, { error: { code: 401, message: "sign in first" } })]);
    await assert.rejects(connectLive(new TokenSource("/token", { fetch }), { GoogleGenAI, model: "m" }), { name: "TokenError", status: 401 });
    assert.equal(calls.length, 1);
    assert.equal(world.connects.length, 0);
  });

  test("the token nearing its expiry (broker clock) renews and resumes once; a capped renewal is not repeated", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const soon = new Date(Date.now() + 30_000).toISOString();
    const { fetch, calls } = brokerFetch([json(200, tokenAnswer(1, { expireTime: soon })), json(200, tokenAnswer(2, { expireTime: soon }))]);
    const states = [];
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      renewBeforeMs: 60_000,
      onstatechange: (s, r) => states.push(`${s}: ${r}`),
    });
    await until(() => world.connects.length === 2 && live.state === "open", "the resume");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(calls.length, 2);
    assert.ok(states.includes("resuming: the token expires soon"));
    live.close();
  });

  test("no resumption handle yet: the session fails saying so", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    class NoHandles extends GoogleGenAI {
      constructor(options) {
        super(options);
        const connect = this.live.connect.bind(this.live);
        this.live.connect = async (params) => {
          const onmessage = params.callbacks.onmessage;
          params.callbacks.onmessage = (m) => (m.sessionResumptionUpdate ? undefined : onmessage(m));
          return connect(params);
        };
      }
    }
    const live = await connectLive(new TokenSource("/token", { fetch: brokerFetch().fetch }), { GoogleGenAI: NoHandles, model: "m" });
    world.connects[0].serverClose(1011, "boom");
    await until(() => live.state === "failed", "the failure");
    assert.match(live.reason, /no resumption handle/);
  });

  test("close() ends it: state closed, onclose once, sends refused", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    const closes = [];
    const live = await connectLive(new TokenSource("/token", { fetch: brokerFetch().fetch }), {
      GoogleGenAI,
      model: "m",
      callbacks: { onclose: (e) => closes.push(e.code) },
    });
    live.close();
    live.close();
    await until(() => closes.length === 1, "the close");
    assert.equal(live.state, "closed");
    assert.equal(world.connects.length, 1);
    assert.throws(() => live.sendClientContent({}), /closed/);
  });

  test("connectLive refuses bad options naming them", async () => {
    const source = new TokenSource("/token", { fetch: brokerFetch().fetch });
    await assert.rejects(connectLive({}, {}), /source must be a TokenSource/);
    await assert.rejects(connectLive(source, { model: "m" }), /pass GoogleGenAI/);
    await assert.rejects(connectLive(source, { GoogleGenAI: fakeGenAI().GoogleGenAI }), /model must be/);
  });

  test("a goAway on the new socket before it is in use: resumed again, nothing lost", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    class WarnsEarly extends GoogleGenAI {
      constructor(options) {
        super(options);
        const connect = this.live.connect.bind(this.live);
        this.live.connect = async (params) => {
          const session = await connect(params);
          // The second socket is warned while connect() is still resolving.
          if (world.connects.length === 2) world.connects[1].serverSend({ goAway: { timeLeft: "1s" } });
          return session;
        };
      }
    }
    const live = await connectLive(new TokenSource("/token", { fetch: brokerFetch().fetch }), { GoogleGenAI: WarnsEarly, model: "m" });
    world.connects[0].serverSend({ goAway: {} });
    live.sendClientContent({ turns: "kept" });
    await until(() => world.connects.length === 3 && live.state === "open", "the second resume");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(world.connects[1].sent, []);
    assert.deepEqual(world.connects[2].sent, [["clientContent", { turns: "kept" }]]);
    assert.equal(world.connects[1].closed, true);
    live.close();
  });

  test("close() while resuming: no new socket stays open, onclose once", async () => {
    const { GoogleGenAI, world } = fakeGenAI();
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const { fetch: answer } = brokerFetch();
    let n = 0;
    const fetch = async (url, init) => {
      n += 1;
      if (n === 2) await gate; // the renewal hangs until the app has closed
      return answer(url, init);
    };
    const closes = [];
    const live = await connectLive(new TokenSource("/token", { fetch }), {
      GoogleGenAI,
      model: "m",
      callbacks: { onclose: (e) => closes.push(e.code) },
    });
    world.connects[0].serverSend({ goAway: {} });
    await until(() => live.state === "resuming", "resuming");
    live.close();
    release();
    await until(() => closes.length === 1, "the close");
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(live.state, "closed");
    assert.equal(world.connects.length, 1);
    assert.equal(world.connects[0].closed, true);
    assert.deepEqual(closes, [1005]);
  });

  // ---------------------------------------------------------------- the exported constants

  test("a status without error.status in the body gets the broker's google.rpc name", async () => {
    for (const [status, code] of [
      [405, "UNIMPLEMENTED"],
      [413, "INVALID_ARGUMENT"],
      [415, "INVALID_ARGUMENT"],
      [404, "NOT_FOUND"],
    ]) {
      const { fetch } = scriptedFetch([new Response("nope", { status })]);
      await assert.rejects(new TokenSource("/token", { fetch }).get(), { name: "TokenError", status, code, retryable: false });
    }
    assert.equal(STATUS_NAMES[405], "UNIMPLEMENTED");
    assert.equal(STATUS_NAMES[503], "UNAVAILABLE");
    assert.ok(Object.isFrozen(STATUS_NAMES));
  });

  test("STATES lists the five states, frozen", () => {
    assert.deepEqual([...STATES], ["connecting", "open", "resuming", "closed", "failed"]);
    assert.ok(Object.isFrozen(STATES));
  });

  // --- minute budgets and cut-offs (docs/budgets.md) ---------------------------------------

  const EXHAUSTED = "no Live minutes left today (your budget of 60 minutes); more in 5h 12min";

  function exhausted(retryAfter = "18720") {
    return json(429, { error: { code: 429, status: "RESOURCE_EXHAUSTED", message: EXHAUSTED } }, { "Retry-After": retryAfter });
  }

  test("source.budget holds the latest budget the broker answered", async () => {
    const budget = (remainingMinutes) => ({ remainingMinutes, resetsAt: "2026-12-08T06:00:00.000Z" });
    const { fetch } = scriptedFetch([
      json(200, { ...tokenAnswer(1), budget: budget(45) }),
      json(200, { ...tokenAnswer(2), budget: budget(30) }),
      json(200, tokenAnswer(3)), // a broker without budgets says nothing: the last one stays
    ]);
    const source = new TokenSource("/token", { fetch });
    assert.equal(source.budget, undefined);
    const first = await source.get();
    assert.deepEqual(first.budget, budget(45));
    assert.deepEqual(source.budget, budget(45));
    await source.renew();
    assert.deepEqual(source.budget, budget(30));
    await source.renew();
    assert.deepEqual(source.budget, budget(30));
  });

  test("a 429 whose Retry-After is longer than maxRetryWaitMs is final, with the broker's message", async () => {
    const { fetch, calls } = scriptedFetch([exhausted()]);
    const { sleep, delays } = fakeSleep();
    const source = new TokenSource("/token", { fetch, sleep });
    await assert.rejects(source.get(), {
      name: "TokenError",
      status: 429,
      code: "RESOURCE_EXHAUSTED",
      retryable: true,
      retryAfterMs: 18_720_000,
      message: EXHAUSTED,
    });
    assert.equal(calls.length, 1);
    assert.deepEqual(delays, []);
    // Within the option it is waited for, as any 429.
    const patient = scriptedFetch([exhausted("90"), json(200, tokenAnswer(1))]);
    const waits = fakeSleep();
    const source2 = new TokenSource("/token", { fetch: patient.fetch, sleep: waits.sleep, maxRetryWaitMs: 120_000, random: () => 0 });
    assert.equal((await source2.get()).name, "auth_tokens/fake-1");
    assert.deepEqual(waits.delays, [90_000]);
    assert.throws(() => new TokenSource("/token", { maxRetryWaitMs: -1 }), /maxRetryWaitMs/);
  });

  for (const [status, refusal, reason] of [
    [429, exhausted, EXHAUSTED],
    [
      403,
      () => json(403, { error: { code: 403, status: "PERMISSION_DENIED", message: "you may not start Live sessions: chargeback" } }),
      "you may not start Live sessions: chargeback",
    ],
  ]) {
    test(`a renewal refused with ${status} (${status === 429 ? "budget spent" : "suspended"}) fails the session with the reason`, async () => {
      const { GoogleGenAI, world } = fakeGenAI();
      const { fetch, calls } = brokerFetch([null, refusal]);
      const states = [];
      const closes = [];
      const live = await connectLive(new TokenSource("/token", { fetch, sleep: fakeSleep().sleep }), {
        GoogleGenAI,
        model: "m",
        callbacks: { onclose: (e) => closes.push(e) },
        onstatechange: (state, why) => states.push(`${state}: ${why}`),
      });
      world.connects[0].serverSend({ goAway: { timeLeft: "1s" } });
      await until(() => closes.length === 1, "the close");
      assert.equal(live.state, "failed");
      assert.equal(live.reason, reason);
      assert.equal(states.at(-1), `failed: ${reason}`);
      assert.equal(calls.length, 2); // the renewal was asked once, not retried
      assert.equal(world.connects.length, 1);
    });
  }
}
