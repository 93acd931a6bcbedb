// gemini-tokens.js: ephemeral tokens from a gemini-tokens broker, and Gemini Live sessions
// that outlast them. A dependency-free ES module, served by every broker adapter at
// `<token path>/client.js` and shipped in the Python package (gemini_tokens/broker/static/),
// so a bundler can import it too.
//
//   import { TokenSource, connectLive } from "/token/client.js";
//   import { GoogleGenAI } from "@google/genai";
//
//   const source = new TokenSource("/token", { headers: { Authorization: "Bearer ..." } });
//   const live = await connectLive(source, {
//     GoogleGenAI, model: "gemini-live-2.5-flash-preview",
//     config: { responseModalities: ["TEXT"] },
//     callbacks: { onmessage: (msg) => show(msg) },
//     onstatechange: (state, reason) => status(state, reason),
//   });
//   live.sendClientContent({ turns: "Hello", turnComplete: true });
//
// The rules it keeps (docs/live-sessions.md): one token fetch in flight at a time; 401 and
// 403 are final (a TokenError the app can show); 429 and 503 wait for Retry-After (plus
// jitter), unless it is longer than `maxRetryWaitMs` (default 60 s): then final, as for a
// spent minute budget (docs/budgets.md), and `source.budget` shows what is left; network
// errors and other 5xx back off exponentially; token times are judged on the
// broker's clock (`serverTime`), not the browser's. On `goAway` or an unexpected close the
// live session renews its token through the broker, closes the old socket, waits for it to
// close, and reconnects with the latest resumption handle; the app sees one session.

const DEFAULT_RETRIES = 6;
const DEFAULT_BACKOFF_MS = 500;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_JITTER = 0.2;
/** The longest Retry-After waited for (ms); a longer one is final (a spent budget). */
export const DEFAULT_MAX_RETRY_WAIT_MS = 60_000;

/** A token request that failed: `status` is the broker's HTTP status (0: unreachable). */
export class TokenError extends Error {
  /**
   * @param {string} message What the app can show the user.
   * @param {{status?: number, code?: string, retryable?: boolean, retryAfterMs?: number}} [info]
   */
  constructor(message, info = {}) {
    super(message);
    this.name = "TokenError";
    /** HTTP status of the broker's answer; 0 when it could not be reached. */
    this.status = info.status ?? 0;
    /** google.rpc status name, e.g. "PERMISSION_DENIED" or "UNAVAILABLE". */
    this.code = info.code ?? "";
    /** True when trying again later may succeed (the retries ran out); false when final. */
    this.retryable = info.retryable ?? false;
    /** The broker's last Retry-After, in milliseconds, when it sent one. */
    this.retryAfterMs = info.retryAfterMs;
  }
}

// The google.rpc status name of an HTTP status, for an answer whose body names none (a
// proxy's page). A copy of the Python package's table (gemini_tokens.status_name); a test
// holds the two equal.
const STATUS_NAMES = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  405: "UNIMPLEMENTED",
  408: "DEADLINE_EXCEEDED",
  409: "ABORTED",
  413: "INVALID_ARGUMENT",
  415: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

function abortError(signal) {
  const reason = signal && signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error("the token request was aborted");
  err.name = "AbortError";
  return err;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      if (signal) signal.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(abortError(signal));
    }
    if (signal) signal.addEventListener("abort", aborted, { once: true });
  });
}

// `promise`, or undefined after `ms` if it has not settled by then (the timer is cleared).
function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Milliseconds to wait from a Retry-After header: delta-seconds, or an HTTP date judged
 * against the answer's own Date header (the server's clock) when it has one.
 * @param {string | null} value
 * @param {string | null} dateHeader
 * @param {number} localNow
 * @returns {number | undefined}
 */
export function parseRetryAfter(value, dateHeader, localNow) {
  if (value == null || value.trim() === "") return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  if (Number.isNaN(when)) return undefined;
  const serverNow = dateHeader ? Date.parse(dateHeader) : Number.NaN;
  return Math.max(0, when - (Number.isNaN(serverNow) ? localNow : serverNow));
}

async function readError(res) {
  let message = "";
  let code = "";
  try {
    const body = await res.json();
    const error = body && typeof body === "object" ? body.error : undefined;
    if (error && typeof error === "object") {
      if (typeof error.message === "string") message = error.message;
      if (typeof error.status === "string") code = error.status;
    }
  } catch {
    // not JSON (a proxy's HTML page): fall back to the status line
  }
  code = code || STATUS_NAMES[res.status] || "";
  return { code, message: message || `the token endpoint answered ${res.status}` };
}

/**
 * Tokens for one app from a gemini-tokens broker endpoint (`POST <url>`).
 *
 * `get()` starts a conversation (a fresh token and a `session` value); `renew()` asks for the
 * next token of the same conversation. Only one request is in flight at a time: a call made
 * while one of the same kind runs shares its answer; another kind waits for it.
 */
export class TokenSource {
  #url;
  #headers;
  #config;
  #fetch;
  #retries;
  #backoffMs;
  #maxBackoffMs;
  #jitter;
  #maxRetryWaitMs;
  #random;
  #now;
  #sleep;
  #onretry;
  #credentials;
  #pending = null;
  #token = null;
  #budget = undefined;
  #skewMs = 0;

  /**
   * @param {string | URL} url The broker's token endpoint, e.g. "/token".
   * @param {object} [options]
   * @param {Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>)} [options.headers]
   *   Extra request headers (how the broker knows the user), or a function returning them.
   * @param {object} [options.config] Client choices sent as `{"config": ...}` with `get()`
   *   (only what the broker's policy lets a client set).
   * @param {number} [options.retries] Retries of a busy or unreachable broker (default 6).
   * @param {number} [options.backoffMs] First back-off delay (default 500 ms).
   * @param {number} [options.maxBackoffMs] Longest back-off delay (default 30 s).
   * @param {number} [options.maxRetryWaitMs] The longest Retry-After (429, 503) waited for
   *   (default 60 000 ms); a longer one is final at once (a spent minute budget).
   * @param {(info: {status: number, delayMs: number, attempt: number, message: string}) => void} [options.onretry]
   *   Told before each wait, e.g. to show "busy, retrying in 2 s".
   * @param {RequestCredentials} [options.credentials] fetch's `credentials` (default
   *   "same-origin"; "include" for a broker on another origin that reads cookies).
   * @param {typeof fetch} [options.fetch] The fetch to use (tests pass a fake).
   */
  constructor(url, options = {}) {
    if (typeof url !== "string" && !(url instanceof URL)) {
      throw new TypeError("TokenSource: url must be a string or a URL");
    }
    const headers = options.headers ?? {};
    if (typeof headers !== "function" && (typeof headers !== "object" || headers === null)) {
      throw new TypeError("TokenSource: headers must be an object or a function");
    }
    if (options.config !== undefined && (typeof options.config !== "object" || options.config === null || Array.isArray(options.config))) {
      throw new TypeError("TokenSource: config must be an object");
    }
    const retries = options.retries ?? DEFAULT_RETRIES;
    if (!Number.isInteger(retries) || retries < 0) {
      throw new TypeError("TokenSource: retries must be a whole number >= 0");
    }
    const maxRetryWaitMs = options.maxRetryWaitMs ?? DEFAULT_MAX_RETRY_WAIT_MS;
    if (typeof maxRetryWaitMs !== "number" || !(maxRetryWaitMs >= 0)) {
      throw new TypeError("TokenSource: maxRetryWaitMs must be a number of milliseconds >= 0");
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw new TypeError("TokenSource: no fetch available; pass options.fetch");
    }
    this.#url = String(url);
    this.#headers = headers;
    this.#config = options.config;
    this.#fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.#retries = retries;
    this.#backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.#maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.#jitter = options.jitter ?? DEFAULT_JITTER;
    this.#maxRetryWaitMs = maxRetryWaitMs;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? sleep;
    this.#onretry = options.onretry;
    this.#credentials = options.credentials ?? "same-origin";
  }

  /** The latest token answer (`name`, `expireTime`, `liveUrl`, `session`, ...), or null. */
  get token() {
    return this.#token;
  }

  /**
   * What is left of the caller's Live-minute budget (`{remainingMinutes, resetsAt}`), from
   * the latest answer that said; undefined before one, or when the broker has no budgets.
   */
  get budget() {
    return this.#budget;
  }

  /** Now on the broker's clock, in epoch milliseconds (the browser's clock plus the skew). */
  serverNow() {
    return this.#now() + this.#skewMs;
  }

  /**
   * Milliseconds until an RFC 3339 time of a token, on the broker's clock.
   * @param {string} time e.g. `source.token.expireTime`
   */
  msUntil(time) {
    return Date.parse(time) - this.serverNow();
  }

  /**
   * Fetch a token for a new conversation.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<object>} the broker's answer
   */
  get(options = {}) {
    return this.#run("get", () => (this.#config === undefined ? {} : { config: this.#config }), options.signal);
  }

  /**
   * Fetch the next token of the current conversation (same policy, choices and caller).
   * Without a conversation yet, the same as `get()`.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<object>} the broker's answer
   */
  renew(options = {}) {
    if (!this.#token || typeof this.#token.session !== "string") return this.get(options);
    return this.#run("renew", () => ({ renew: this.#token.session }), options.signal);
  }

  #run(kind, body, signal) {
    if (this.#pending && this.#pending.kind === kind) return this.#pending.promise;
    const before = this.#pending ? this.#pending.promise.catch(() => undefined) : Promise.resolve();
    const promise = before.then(() => this.#request(body(), signal));
    const entry = { kind, promise };
    this.#pending = entry;
    promise
      .finally(() => {
        if (this.#pending === entry) this.#pending = null;
      })
      .catch(() => undefined);
    return promise;
  }

  #backoff(attempt) {
    const ceiling = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** attempt);
    return ceiling / 2 + (this.#random() * ceiling) / 2;
  }

  async #request(body, signal) {
    for (let attempt = 0; ; attempt += 1) {
      if (signal && signal.aborted) throw abortError(signal);
      let headers = typeof this.#headers === "function" ? await this.#headers() : this.#headers;
      if (typeof Headers !== "undefined" && headers instanceof Headers) headers = Object.fromEntries(headers.entries());
      let res;
      const sentAt = this.#now();
      try {
        res = await this.#fetch(this.#url, {
          method: "POST",
          headers: { ...headers, "Content-Type": "application/json" },
          body: JSON.stringify(body),
          credentials: this.#credentials,
          cache: "no-store",
          signal,
        });
      } catch (err) {
        if (signal && signal.aborted) throw abortError(signal);
        const message = `the token endpoint could not be reached (${err && err.message ? err.message : err})`;
        if (attempt >= this.#retries) {
          throw new TokenError(message, { status: 0, code: "UNAVAILABLE", retryable: true });
        }
        await this.#wait(0, this.#backoff(attempt), attempt, message, signal);
        continue;
      }
      if (res.ok) return this.#accept(res, sentAt);
      const { code, message } = await readError(res);
      const busy = res.status === 429 || res.status === 503;
      if (!busy && res.status < 500) {
        // 401 (signed out), 403 (not allowed, or the conversation's cap), 400 ...: final.
        throw new TokenError(message, { status: res.status, code, retryable: false });
      }
      const retryAfterMs = busy
        ? parseRetryAfter(res.headers.get("Retry-After"), res.headers.get("Date"), this.#now())
        : undefined;
      if (attempt >= this.#retries || (retryAfterMs !== undefined && retryAfterMs > this.#maxRetryWaitMs)) {
        // Out of retries, or told to come back later than we wait (a spent budget): final.
        throw new TokenError(message, { status: res.status, code, retryable: true, retryAfterMs });
      }
      // Never sooner than Retry-After; jitter spreads the clients a busy broker sent away.
      const delay =
        retryAfterMs === undefined
          ? this.#backoff(attempt)
          : retryAfterMs * (1 + this.#jitter * this.#random());
      await this.#wait(res.status, delay, attempt, message, signal);
    }
  }

  async #wait(status, delayMs, attempt, message, signal) {
    if (this.#onretry) {
      try {
        this.#onretry({ status, delayMs, attempt: attempt + 1, message });
      } catch {
        // the app's display hook must not break the retries
      }
    }
    await this.#sleep(delayMs, signal);
  }

  async #accept(res, sentAt) {
    let token;
    try {
      token = await res.json();
    } catch {
      throw new TokenError("the token endpoint answered with something that is not JSON", {
        status: res.status,
        code: "INTERNAL",
      });
    }
    if (!token || typeof token !== "object" || typeof token.name !== "string") {
      throw new TokenError("the token endpoint's answer holds no token", {
        status: res.status,
        code: "INTERNAL",
      });
    }
    const receivedAt = this.#now();
    const serverTime = typeof token.serverTime === "string" ? Date.parse(token.serverTime) : Number.NaN;
    if (!Number.isNaN(serverTime)) {
      // The broker's clock at about the middle of the round trip.
      this.#skewMs = serverTime - (sentAt + receivedAt) / 2;
    }
    this.#token = token;
    const budget = token.budget;
    if (budget && typeof budget === "object" && typeof budget.remainingMinutes === "number") {
      this.#budget = budget;
    }
    return token;
  }
}

/** States reported by `onstatechange`. */
export const STATES = Object.freeze(["connecting", "open", "resuming", "closed", "failed"]);

function liveBaseUrl(liveUrl) {
  if (typeof liveUrl !== "string") return undefined;
  try {
    const url = new URL(liveUrl);
    const protocol = url.protocol === "ws:" ? "http:" : url.protocol === "wss:" ? "https:" : url.protocol;
    return `${protocol}//${url.host}`;
  } catch {
    return undefined;
  }
}

/**
 * A Gemini Live session that renews its token and resumes itself; made by `connectLive`.
 * Its send methods take what `@google/genai`'s `Session` takes; while it resumes they are
 * queued and sent, in order, once the new socket is open.
 */
export class LiveConnection {
  #source;
  #GoogleGenAI;
  #model;
  #config;
  #callbacks;
  #onstatechange;
  #baseUrl;
  #apiVersion;
  #renewBeforeMs;
  #closeTimeoutMs;
  #resumeAttempts;
  #current = null;
  #handle = null;
  #queue = [];
  #state = "connecting";
  #reason = "";
  #timer = null;
  #resuming = null;
  #lastExpiry = Number.NEGATIVE_INFINITY;
  #opened = false;
  #finalClose = false;
  #generation = 0;

  /** @internal use `connectLive`. */
  constructor(source, options) {
    this.#source = source;
    this.#GoogleGenAI = options.GoogleGenAI;
    this.#model = options.model;
    this.#config = options.config ?? {};
    this.#callbacks = options.callbacks ?? {};
    this.#onstatechange = options.onstatechange;
    this.#baseUrl = options.baseUrl;
    this.#apiVersion = options.apiVersion ?? "v1alpha";
    this.#renewBeforeMs = options.renewBeforeMs ?? 60_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
    this.#resumeAttempts = options.resumeAttempts ?? 3;
  }

  /** "connecting" | "open" | "resuming" | "closed" | "failed". */
  get state() {
    return this.#state;
  }

  /** Why the state last changed (shown to users on "failed"). */
  get reason() {
    return this.#reason;
  }

  /** How many sockets this session has used (1 + the resumptions). */
  get connections() {
    return this.#generation;
  }

  #setState(state, reason) {
    this.#state = state;
    this.#reason = reason;
    if (this.#onstatechange) {
      try {
        this.#onstatechange(state, reason);
      } catch (err) {
        console.error("gemini-tokens: onstatechange threw", err);
      }
    }
  }

  async _start() {
    this.#setState("connecting", "fetching a token");
    try {
      await this.#source.get();
      this.#setState("connecting", "opening the session");
      const gen = await this.#open(null);
      if (this.#state === "closed") {
        void this.#retire(gen).then((event) => this.#finish(event));
        return this;
      }
      this.#opened = true;
      this.#becomeOpen("connected");
    } catch (err) {
      this.#fail(err);
      throw err;
    }
    return this;
  }

  async #open(handle) {
    const token = this.#source.token;
    const baseUrl = this.#baseUrl ?? liveBaseUrl(token.liveUrl);
    const ai = new this.#GoogleGenAI({
      apiKey: token.name,
      httpOptions: baseUrl ? { apiVersion: this.#apiVersion, baseUrl } : { apiVersion: this.#apiVersion },
    });
    const resumption = { ...(this.#config.sessionResumption ?? {}) };
    if (handle) resumption.handle = handle;
    this.#generation += 1;
    const gen = { index: this.#generation, session: null, retired: false, setup: false };
    gen.closed = new Promise((resolve) => {
      gen.onclosed = resolve;
    });
    this.#current = gen;
    gen.session = await ai.live.connect({
      model: this.#model,
      config: { ...this.#config, sessionResumption: resumption },
      callbacks: {
        onmessage: (msg) => this.#message(gen, msg),
        onerror: (event) => {
          if (gen === this.#current && !gen.retired && this.#callbacks.onerror) this.#callbacks.onerror(event);
        },
        onclose: (event) => {
          gen.closeEvent = event;
          gen.onclosed(event);
          this.#closed(gen, event);
        },
      },
    });
    return gen;
  }

  #message(gen, msg) {
    const update = msg.sessionResumptionUpdate;
    if (update && update.newHandle && update.resumable !== false) this.#handle = update.newHandle;
    if (msg.setupComplete) {
      gen.setup = true;
      if (gen.index > 1) return; // the app saw the first; a resume is not a new session
    }
    if (msg.goAway) {
      const left = msg.goAway.timeLeft ? ` (time left ${msg.goAway.timeLeft})` : "";
      // Remembered on its socket: one that warns before it is in use is replaced right after.
      gen.trouble = gen.trouble || `the service sent goAway${left}`;
      if (this.#state === "open" && gen === this.#current) void this.#resume(gen.trouble);
      return;
    }
    if (update) return; // resumption is this helper's business
    if (this.#callbacks.onmessage) this.#callbacks.onmessage(msg);
  }

  #closed(gen, event) {
    if (gen.retired || gen !== this.#current) return; // closed by us, to resume
    if (!gen.setup) return; // a failed connect: ai.live.connect() rejects, handled there
    if (this.#state === "closed" || this.#state === "failed") {
      this.#finish(event);
      return;
    }
    const code = event && event.code !== undefined ? event.code : 1006;
    const why = event && event.reason ? `: ${event.reason}` : "";
    gen.trouble = `the socket closed unexpectedly (${code}${why})`;
    if (this.#state === "open") void this.#resume(gen.trouble);
  }

  #finish(event) {
    if (this.#finalClose) return;
    this.#finalClose = true;
    if (this.#callbacks.onclose) this.#callbacks.onclose(event ?? { code: 1000, reason: this.#reason });
  }

  #becomeOpen(reason) {
    const gen = this.#current;
    this.#setState("open", reason);
    if (gen.trouble) {
      // Warned or closed while it was being opened: the queue waits for the next socket
      // (after this resume has finished: a new task).
      setTimeout(() => void this.#resume(gen.trouble), 0);
      return;
    }
    const queued = this.#queue;
    this.#queue = [];
    for (const [method, params] of queued) gen.session[method](params);
    this.#schedule();
  }

  #schedule() {
    clearTimeout(this.#timer);
    this.#timer = null;
    const token = this.#source.token;
    if (!token || typeof token.expireTime !== "string") return;
    const expiry = Date.parse(token.expireTime);
    // A renewal that cannot reach further (the conversation's cap) is not repeated: at the
    // cap the service ends the session and the renewal that follows says why.
    if (!(expiry > this.#lastExpiry)) return;
    this.#lastExpiry = expiry;
    const delay = Math.max(0, this.#source.msUntil(token.expireTime) - this.#renewBeforeMs);
    this.#timer = setTimeout(() => void this.#resume("the token expires soon"), Math.min(delay, 2 ** 31 - 1));
    // In Node, the renewal timer alone must not keep the process alive (browsers: a number).
    if (typeof this.#timer === "object" && typeof this.#timer.unref === "function") this.#timer.unref();
  }

  #retire(gen) {
    if (!gen || gen.retired) return gen ? gen.closed : Promise.resolve();
    gen.retired = true;
    if (gen.session && !gen.closeEvent) {
      try {
        gen.session.close();
      } catch {
        // already closed
      }
    }
    return gen.closeEvent ? Promise.resolve(gen.closeEvent) : gen.closed;
  }

  #resume(reason) {
    if (this.#resuming || this.#state !== "open") return this.#resuming;
    this.#resuming = this.#resumeNow(reason).finally(() => {
      this.#resuming = null;
    });
    return this.#resuming;
  }

  async #resumeNow(reason) {
    clearTimeout(this.#timer);
    this.#setState("resuming", reason);
    let lastError = null;
    for (let attempt = 0; attempt < this.#resumeAttempts; attempt += 1) {
      if (attempt > 0) await sleep(DEFAULT_BACKOFF_MS * 2 ** (attempt - 1));
      if (this.#state !== "resuming") return this.#ended();
      try {
        await this.#source.renew();
      } catch (err) {
        this.#fail(err); // 401, 403 (the cap), or the broker out of reach for good
        return undefined;
      }
      if (this.#state !== "resuming") return this.#ended();
      // The service refuses a resume while the old socket is open: close it and wait.
      await within(this.#retire(this.#current), this.#closeTimeoutMs);
      if (this.#state !== "resuming") return this.#ended();
      if (!this.#handle) {
        this.#fail(new Error(`${reason}; the session cannot be resumed (no resumption handle yet)`));
        return undefined;
      }
      try {
        await this.#open(this.#handle);
      } catch (err) {
        lastError = err; // e.g. refused: try again with a fresh token
        continue;
      }
      if (this.#state !== "resuming") return this.#ended();
      this.#becomeOpen(`resumed after ${reason}`);
      return undefined;
    }
    this.#fail(lastError ?? new Error(`${reason}; resuming failed`));
    return undefined;
  }

  // The app closed the session while it was resuming: close what is open, then onclose.
  #ended() {
    if (this.#state === "closed") {
      void within(this.#retire(this.#current), this.#closeTimeoutMs).then((event) => this.#finish(event));
    }
    return undefined;
  }

  #fail(err) {
    if (this.#state === "closed" || this.#state === "failed") return;
    clearTimeout(this.#timer);
    const reason = err && err.message ? err.message : String(err);
    this.#setState("failed", reason);
    const gen = this.#current;
    this.#queue = [];
    if (gen && gen.setup) {
      void this.#retire(gen).then((event) => this.#finish(event));
    } else if (this.#opened) {
      this.#finish({ code: 1006, reason });
    }
  }

  #send(method, params) {
    const gen = this.#current;
    if (this.#state === "open" && gen && gen.session && !gen.trouble) {
      gen.session[method](params);
    } else if (this.#state === "open" || this.#state === "resuming" || this.#state === "connecting") {
      this.#queue.push([method, params]);
    } else {
      throw new Error(`the live session is ${this.#state}${this.#reason ? `: ${this.#reason}` : ""}`);
    }
  }

  /** As `Session.sendClientContent`; queued while the session resumes. */
  sendClientContent(params) {
    this.#send("sendClientContent", params);
  }

  /** As `Session.sendRealtimeInput`; queued while the session resumes. */
  sendRealtimeInput(params) {
    this.#send("sendRealtimeInput", params);
  }

  /** As `Session.sendToolResponse`; queued while the session resumes. */
  sendToolResponse(params) {
    this.#send("sendToolResponse", params);
  }

  /** End the session (state "closed"); `callbacks.onclose` runs once the socket has closed. */
  close() {
    if (this.#state === "closed" || this.#state === "failed") return;
    clearTimeout(this.#timer);
    this.#queue = [];
    this.#setState("closed", "closed by the app");
    const gen = this.#current;
    if (gen && gen.setup) void this.#retire(gen).then((event) => this.#finish(event));
  }
}

/**
 * Open a Gemini Live session with tokens from `source`, kept alive across token expiry,
 * `goAway` and unexpected closes by renewing and resuming.
 *
 * @param {TokenSource} source
 * @param {object} options
 * @param {Function} options.GoogleGenAI The class from `@google/genai` (the app's own copy).
 * @param {string} options.model The model (a token that locks it wins anyway).
 * @param {object} [options.config] A `LiveConnectConfig`; `sessionResumption` is added.
 * @param {{onopen?: Function, onmessage?: Function, onerror?: Function, onclose?: Function}} [options.callbacks]
 *   As `ai.live.connect`'s, across all sockets: `onmessage` sees every server message but
 *   `goAway`, `sessionResumptionUpdate` and a resumed socket's `setupComplete`; `onclose` runs
 *   once, when the session ends for good.
 * @param {(state: string, reason: string) => void} [options.onstatechange]
 * @param {string} [options.baseUrl] Where the Live API is (default: the token's `liveUrl`).
 * @param {number} [options.renewBeforeMs] Renew and resume this long before the token expires
 *   (default 60 s).
 * @returns {Promise<LiveConnection>} once the first socket is open.
 */
export async function connectLive(source, options = {}) {
  if (!(source instanceof TokenSource)) throw new TypeError("connectLive: source must be a TokenSource");
  if (typeof options.GoogleGenAI !== "function") {
    throw new TypeError("connectLive: pass GoogleGenAI (import { GoogleGenAI } from \"@google/genai\")");
  }
  if (typeof options.model !== "string" || options.model === "") {
    throw new TypeError("connectLive: model must be a non-empty string");
  }
  const live = new LiveConnection(source, options);
  await live._start();
  if (options.callbacks && options.callbacks.onopen) options.callbacks.onopen();
  return live;
}
