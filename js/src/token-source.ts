// TokenSource: tokens from a gemini-tokens broker endpoint, with the retry rules of
// docs/live-sessions.md (one request in flight, 401/403 final, Retry-After on 429/503 unless
// it is longer than `maxRetryWaitMs` (then final: a spent minute budget comes back in hours),
// exponential back-off otherwise, times judged on the broker's clock).

import { STATUS_NAMES, TokenError, parseRetryAfter } from "./errors.js";
import { abortError, sleep } from "./timers.js";

const DEFAULT_RETRIES = 6;
/** The first back-off delay, in milliseconds; the live session's resume attempts use it too. */
export const DEFAULT_BACKOFF_MS = 500;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const DEFAULT_JITTER = 0.2;
/** The longest Retry-After waited for (ms); a longer one is final (a spent budget). */
export const DEFAULT_MAX_RETRY_WAIT_MS = 60_000;

/** What is left of the caller's Live-minute budget (the tightest), as the broker answers it. */
export interface BrokerBudget {
  /** Live minutes the caller may still be granted. */
  readonly remainingMinutes: number;
  /** When the tightest budget gets its next minute back (RFC 3339, on the broker's clock). */
  readonly resetsAt: string;
}

/**
 * The broker's answer to a token request (`POST <token path>`): the service's AuthToken
 * (`token.to_dict()`) plus `liveUrl`, `serverTime` and, with renewal on, `session`.
 * Every field the broker may send is here, and no other: a misspelt one is a type error.
 */
export interface BrokerToken {
  /** The token, "auth_tokens/...": the API key of the Live session. A secret. */
  readonly name: string;
  /** The Live API WebSocket URL, which holds the token (a secret too). */
  readonly liveUrl: string;
  /** The broker's clock when it answered (RFC 3339): judge the other times against it. */
  readonly serverTime: string;
  /** When the token stops working (RFC 3339, on the broker's clock). */
  readonly expireTime: string;
  /** Until when the token may open a new session (RFC 3339). */
  readonly newSessionExpireTime: string;
  /** How many sessions the token may open (0: no limit). */
  readonly uses: number;
  /** The conversation's signed value, sent back as `{"renew": session}`; only with renewal on. */
  readonly session?: string;
  /** The constrained Live setup the token carries, as the service answered it. */
  readonly bidiGenerateContentSetup?: Readonly<Record<string, unknown>>;
  /** The locked fields, comma-separated paths; absent when the whole setup is locked. */
  readonly fieldMask?: string;
  /** What is left of the caller's minute budget; only when the broker has budgets. */
  readonly budget?: BrokerBudget | undefined;
}

/** What `onretry` is told before each wait. */
export interface RetryInfo {
  /** The broker's HTTP status; 0 when it could not be reached. */
  readonly status: number;
  /** How long the source waits before trying again, in milliseconds. */
  readonly delayMs: number;
  /** 1 for the first retry, 2 for the second, ... */
  readonly attempt: number;
  /** The broker's message (or the network error's). */
  readonly message: string;
}

/** A plain object of request headers, or anything `fetch` takes as headers. */
export type HeadersLike = Record<string, string> | Headers;

/** Options of `new TokenSource(url, options)`. */
export interface TokenSourceOptions {
  /** Extra request headers (how the broker knows the user), or a function returning them. */
  headers?: HeadersLike | (() => HeadersLike | Promise<HeadersLike>);
  /** Client choices sent as `{"config": ...}` with `get()` (what the policy lets a client set). */
  config?: Readonly<Record<string, unknown>>;
  /** Retries of a busy or unreachable broker (default 6). */
  retries?: number;
  /** First back-off delay in milliseconds (default 500). */
  backoffMs?: number;
  /** Longest back-off delay in milliseconds (default 30 000). */
  maxBackoffMs?: number;
  /** Extra share of Retry-After added at random, 0 to 1 (default 0.2). */
  jitter?: number;
  /**
   * The longest Retry-After (429, 503) waited for, in milliseconds (default 60 000). A longer
   * one is final: a TokenError (`retryable: true`, `retryAfterMs` set) at once, so that a
   * spent minute budget ("no Live minutes left today", Retry-After in hours) fails the
   * session with the broker's message instead of waiting for hours.
   */
  maxRetryWaitMs?: number;
  /** Told before each wait, e.g. to show "busy, retrying in 2 s". */
  onretry?: (info: RetryInfo) => void;
  /** fetch's `credentials` (default "same-origin"; "include" for a broker on another origin). */
  credentials?: RequestCredentials;
  /** The fetch to use (tests pass a fake). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Random numbers in [0, 1) for the jitter (tests pass a fixed one). */
  random?: () => number;
  /** The local clock in epoch milliseconds (tests pass a fixed one). */
  now?: () => number;
  /** How to wait (tests pass one that records the delays). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Options of one `get()` or `renew()` call. */
export interface RequestOptions {
  /** Aborts the request and its retries. */
  signal?: AbortSignal;
}

type Kind = "get" | "renew";
type Body = { config?: Readonly<Record<string, unknown>> } | { renew: string };

async function readError(res: Response): Promise<{ code: string; message: string }> {
  let message = "";
  let code = "";
  try {
    const body: unknown = await res.json();
    const error = body && typeof body === "object" ? (body as { error?: unknown }).error : undefined;
    if (error && typeof error === "object") {
      const { message: m, status: s } = error as { message?: unknown; status?: unknown };
      if (typeof m === "string") message = m;
      if (typeof s === "string") code = s;
    }
  } catch {
    // not JSON (a proxy's HTML page): fall back to the status line
  }
  code = code || STATUS_NAMES[res.status] || "";
  return { code, message: message || `the token endpoint answered ${res.status}` };
}

function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Tokens for one app from a gemini-tokens broker endpoint (`POST <url>`).
 *
 * `get()` starts a conversation (a fresh token and a `session` value); `renew()` asks for the
 * next token of the same conversation. Only one request is in flight at a time: a call made
 * while one of the same kind runs shares its answer; another kind waits for it.
 */
export class TokenSource {
  readonly #url: string;
  readonly #headers: NonNullable<TokenSourceOptions["headers"]>;
  readonly #config: Readonly<Record<string, unknown>> | undefined;
  readonly #fetch: (input: string, init: RequestInit) => Promise<Response>;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #jitter: number;
  readonly #maxRetryWaitMs: number;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #onretry: ((info: RetryInfo) => void) | undefined;
  readonly #credentials: RequestCredentials;
  #pending: { kind: Kind; promise: Promise<BrokerToken> } | null = null;
  #token: BrokerToken | null = null;
  #budget: BrokerBudget | undefined = undefined;
  #skewMs = 0;

  /**
   * @param url The broker's token endpoint, e.g. "/token".
   * @param options Headers, client choices, retry settings; see `TokenSourceOptions`.
   * @throws TypeError naming the option when one is malformed.
   */
  constructor(url: string | URL, options: TokenSourceOptions = {}) {
    if (typeof url !== "string" && !(url instanceof URL)) {
      throw new TypeError("TokenSource: url must be a string or a URL");
    }
    const headers = options.headers ?? {};
    if (typeof headers !== "function" && (typeof headers !== "object" || headers === null)) {
      throw new TypeError("TokenSource: headers must be an object or a function");
    }
    if (options.config !== undefined && !isPlainObject(options.config)) {
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
    if (typeof (options.fetch ?? globalThis.fetch) !== "function") {
      throw new TypeError("TokenSource: no fetch available; pass options.fetch");
    }
    this.#url = String(url);
    this.#headers = headers;
    this.#config = options.config;
    // Late-bound: a page may replace window.fetch (a test double, a tracing wrapper) later.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
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

  /** The latest token answer, or null before the first. */
  get token(): BrokerToken | null {
    return this.#token;
  }

  /**
   * What is left of the caller's Live-minute budget, from the latest token answer that said
   * (undefined before one, or when the broker has no budgets): show it before the user talks.
   */
  get budget(): BrokerBudget | undefined {
    return this.#budget;
  }

  /** Now on the broker's clock, in epoch milliseconds (the local clock plus the skew). */
  serverNow(): number {
    return this.#now() + this.#skewMs;
  }

  /**
   * Milliseconds until an RFC 3339 time of a token, on the broker's clock.
   * @param time e.g. `source.token.expireTime`
   */
  msUntil(time: string): number {
    return Date.parse(time) - this.serverNow();
  }

  /** Fetch a token for a new conversation. */
  get(options: RequestOptions = {}): Promise<BrokerToken> {
    return this.#run("get", () => (this.#config === undefined ? {} : { config: this.#config }), options.signal);
  }

  /**
   * Fetch the next token of the current conversation (same policy, choices and caller).
   * Without a conversation yet, the same as `get()`.
   */
  renew(options: RequestOptions = {}): Promise<BrokerToken> {
    const session = this.#token?.session;
    if (typeof session !== "string") return this.get(options);
    return this.#run("renew", () => ({ renew: session }), options.signal);
  }

  #run(kind: Kind, body: () => Body, signal: AbortSignal | undefined): Promise<BrokerToken> {
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

  #backoff(attempt: number): number {
    const ceiling = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** attempt);
    return ceiling / 2 + (this.#random() * ceiling) / 2;
  }

  async #headersNow(): Promise<Record<string, string>> {
    const headers = typeof this.#headers === "function" ? await this.#headers() : this.#headers;
    if (typeof Headers !== "undefined" && headers instanceof Headers) return Object.fromEntries(headers.entries());
    return headers as Record<string, string>;
  }

  async #request(body: Body, signal: AbortSignal | undefined): Promise<BrokerToken> {
    for (let attempt = 0; ; attempt += 1) {
      if (signal?.aborted) throw abortError(signal);
      const headers = await this.#headersNow();
      let res: Response;
      const sentAt = this.#now();
      try {
        const init: RequestInit = {
          method: "POST",
          headers: { ...headers, "Content-Type": "application/json" },
          body: JSON.stringify(body),
          credentials: this.#credentials,
          cache: "no-store",
        };
        if (signal) init.signal = signal;
        res = await this.#fetch(this.#url, init);
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        const detail = err instanceof Error && err.message ? err.message : String(err);
        const message = `the token endpoint could not be reached (${detail})`;
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
        retryAfterMs === undefined ? this.#backoff(attempt) : retryAfterMs * (1 + this.#jitter * this.#random());
      await this.#wait(res.status, delay, attempt, message, signal);
    }
  }

  async #wait(
    status: number,
    delayMs: number,
    attempt: number,
    message: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (this.#onretry) {
      try {
        this.#onretry({ status, delayMs, attempt: attempt + 1, message });
      } catch {
        // the app's display hook must not break the retries
      }
    }
    await this.#sleep(delayMs, signal);
  }

  async #accept(res: Response, sentAt: number): Promise<BrokerToken> {
    let token: unknown;
    try {
      token = await res.json();
    } catch {
      throw new TokenError("the token endpoint answered with something that is not JSON", {
        status: res.status,
        code: "INTERNAL",
      });
    }
    if (!token || typeof token !== "object" || typeof (token as { name?: unknown }).name !== "string") {
      throw new TokenError("the token endpoint's answer holds no token", { status: res.status, code: "INTERNAL" });
    }
    const answer = token as BrokerToken;
    const receivedAt = this.#now();
    const serverTime = typeof answer.serverTime === "string" ? Date.parse(answer.serverTime) : Number.NaN;
    if (!Number.isNaN(serverTime)) {
      // The broker's clock at about the middle of the round trip.
      this.#skewMs = serverTime - (sentAt + receivedAt) / 2;
    }
    this.#token = answer;
    const budget = (answer as { budget?: unknown }).budget;
    if (budget && typeof budget === "object" && typeof (budget as BrokerBudget).remainingMinutes === "number") {
      this.#budget = budget as BrokerBudget;
    }
    return answer;
  }
}
