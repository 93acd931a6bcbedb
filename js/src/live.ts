// connectLive and LiveConnection: a Gemini Live session that renews its token through the
// broker and resumes itself on goAway, an unexpected close or the token's expiry, so the app
// sees one session (docs/live-sessions.md).

import type {
  LiveConnectConfig,
  LiveConnectParameters,
  LiveSendClientContentParameters,
  LiveSendRealtimeInputParameters,
  LiveSendToolResponseParameters,
  LiveServerMessage,
} from "@google/genai";

import { DEFAULT_BACKOFF_MS, TokenSource } from "./token-source.js";
import { sleep, unref, within } from "./timers.js";

/** The states reported by `onstatechange`, in the order a session usually meets them. */
export const STATES = Object.freeze(["connecting", "open", "resuming", "closed", "failed"] as const);

/** A live session's state: "connecting" | "open" | "resuming" | "closed" | "failed". */
export type LiveState = (typeof STATES)[number];

/** How a socket (or the whole session) closed: the WebSocket's code and reason. */
export interface LiveCloseEvent {
  readonly code: number;
  readonly reason: string;
}

/** The app's callbacks, as `ai.live.connect`'s, across all the session's sockets. */
export interface LiveCallbacks {
  /** Once, when the first socket is open and set up. */
  onopen?: () => void;
  /**
   * Every server message but `goAway`, `sessionResumptionUpdate` and a resumed socket's
   * `setupComplete` (resumption is this helper's business).
   */
  onmessage?: (message: LiveServerMessage) => void;
  /** A WebSocket error of the socket in use. */
  onerror?: (event: ErrorEvent) => void;
  /** Once, when the session ends for good (closed by the app, or failed). */
  onclose?: (event: LiveCloseEvent) => void;
}

/** What the app sends on a live session: `@google/genai`'s `Session` methods. */
export interface LiveSession {
  /** As `Session.sendClientContent`. */
  sendClientContent(params: LiveSendClientContentParameters): void;
  /** As `Session.sendRealtimeInput` (audio chunks, text, activity signals). */
  sendRealtimeInput(params: LiveSendRealtimeInputParameters): void;
  /** As `Session.sendToolResponse`. */
  sendToolResponse(params: LiveSendToolResponseParameters): void;
  /** End the session. */
  close(): void;
}

/** The `GoogleGenAI` class of `@google/genai`, as far as `connectLive` uses it. */
export interface GoogleGenAIConstructor {
  new (options: { apiKey: string; httpOptions: { apiVersion: string; baseUrl?: string } }): {
    readonly live: { connect(params: LiveConnectParameters): Promise<LiveSession> };
  };
}

/** Options of `connectLive(source, options)`. */
export interface ConnectLiveOptions {
  /** The class from `@google/genai` (the app's own copy): `import { GoogleGenAI } from "@google/genai"`. */
  GoogleGenAI: GoogleGenAIConstructor;
  /** The model (a token that locks it wins anyway). */
  model: string;
  /** A `LiveConnectConfig`; `sessionResumption` is added. */
  config?: LiveConnectConfig;
  /** The app's callbacks across all sockets. */
  callbacks?: LiveCallbacks;
  /** Told each change of state, with why (show `reason` on "failed"). */
  onstatechange?: (state: LiveState, reason: string) => void;
  /** Where the Live API is (default: the host of the token's `liveUrl`). */
  baseUrl?: string;
  /** The Live API version (default "v1alpha", which ephemeral tokens need). */
  apiVersion?: string;
  /** Renew and resume this long before the token expires, in milliseconds (default 60 000). */
  renewBeforeMs?: number;
  /** How long to wait for an old socket to close before resuming anyway (default 5 000 ms). */
  closeTimeoutMs?: number;
  /** Renew-and-reconnect attempts per resume before the session fails (default 3). */
  resumeAttempts?: number;
}

// One socket of the session.
interface Generation {
  readonly index: number;
  session: LiveSession | null;
  retired: boolean;
  setup: boolean;
  trouble?: string;
  closeEvent?: LiveCloseEvent;
  readonly closed: Promise<LiveCloseEvent>;
  onclosed: (event: LiveCloseEvent) => void;
}

type Send = (session: LiveSession) => void;

function liveBaseUrl(liveUrl: unknown): string | undefined {
  if (typeof liveUrl !== "string") return undefined;
  try {
    const url = new URL(liveUrl);
    const protocol = url.protocol === "ws:" ? "http:" : url.protocol === "wss:" ? "https:" : url.protocol;
    return `${protocol}//${url.host}`;
  } catch {
    return undefined;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error && err.message ? err.message : String(err);
}

/**
 * A Gemini Live session that renews its token and resumes itself; made by `connectLive`.
 * Its send methods take what `@google/genai`'s `Session` takes; while it connects or resumes
 * they are queued and sent, in order, once the new socket is open.
 */
export class LiveConnection implements LiveSession {
  readonly #source: TokenSource;
  readonly #GoogleGenAI: GoogleGenAIConstructor;
  readonly #model: string;
  readonly #config: LiveConnectConfig;
  readonly #callbacks: LiveCallbacks;
  readonly #onstatechange: ((state: LiveState, reason: string) => void) | undefined;
  readonly #baseUrl: string | undefined;
  readonly #apiVersion: string;
  readonly #renewBeforeMs: number;
  readonly #closeTimeoutMs: number;
  readonly #resumeAttempts: number;
  #current: Generation | null = null;
  #handle: string | null = null;
  #queue: Send[] = [];
  #state: LiveState = "connecting";
  #reason = "";
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #resuming: Promise<void> | null = null;
  #lastExpiry = Number.NEGATIVE_INFINITY;
  #opened = false;
  #finalClose = false;
  #generation = 0;

  /** Use `connectLive`, which also opens the session. */
  constructor(source: TokenSource, options: ConnectLiveOptions) {
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
  get state(): LiveState {
    return this.#state;
  }

  /** Why the state last changed (shown to users on "failed"). */
  get reason(): string {
    return this.#reason;
  }

  /** How many sockets this session has used (1 + the resumptions). */
  get connections(): number {
    return this.#generation;
  }

  #setState(state: LiveState, reason: string): void {
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

  /** @internal Fetch the first token and open the first socket; `connectLive` calls it. */
  async _start(): Promise<this> {
    this.#setState("connecting", "fetching a token");
    try {
      await this.#source.get();
      this.#setState("connecting", "opening the session");
      const gen = await this.#open(null);
      // Closed by the app while the socket was being opened.
      if ((this.#state as LiveState) === "closed") {
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

  async #open(handle: string | null): Promise<Generation> {
    const token = this.#source.token;
    if (!token) throw new Error("no token to open the session with");
    const baseUrl = this.#baseUrl ?? liveBaseUrl(token.liveUrl);
    const ai = new this.#GoogleGenAI({
      apiKey: token.name,
      httpOptions: baseUrl ? { apiVersion: this.#apiVersion, baseUrl } : { apiVersion: this.#apiVersion },
    });
    const resumption = { ...(this.#config.sessionResumption ?? {}) };
    if (handle) resumption.handle = handle;
    this.#generation += 1;
    let onclosed!: (event: LiveCloseEvent) => void;
    const closed = new Promise<LiveCloseEvent>((resolve) => {
      onclosed = resolve;
    });
    const gen: Generation = { index: this.#generation, session: null, retired: false, setup: false, closed, onclosed };
    this.#current = gen;
    gen.session = await ai.live.connect({
      model: this.#model,
      config: { ...this.#config, sessionResumption: resumption },
      callbacks: {
        onmessage: (msg: LiveServerMessage) => this.#message(gen, msg),
        onerror: (event: ErrorEvent) => {
          if (gen === this.#current && !gen.retired) this.#callbacks.onerror?.(event);
        },
        onclose: (event: CloseEvent) => {
          gen.closeEvent = event;
          gen.onclosed(event);
          this.#closed(gen, event);
        },
      },
    });
    return gen;
  }

  #message(gen: Generation, msg: LiveServerMessage): void {
    const update = msg.sessionResumptionUpdate;
    if (update?.newHandle && update.resumable !== false) this.#handle = update.newHandle;
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
    this.#callbacks.onmessage?.(msg);
  }

  #closed(gen: Generation, event: LiveCloseEvent | undefined): void {
    if (gen.retired || gen !== this.#current) return; // closed by us, to resume
    if (!gen.setup) return; // a failed connect: ai.live.connect() rejects, handled there
    if (this.#state === "closed" || this.#state === "failed") {
      this.#finish(event);
      return;
    }
    const code = event && event.code !== undefined ? event.code : 1006;
    const why = event?.reason ? `: ${event.reason}` : "";
    gen.trouble = `the socket closed unexpectedly (${code}${why})`;
    if (this.#state === "open") void this.#resume(gen.trouble);
  }

  #finish(event: LiveCloseEvent | undefined): void {
    if (this.#finalClose) return;
    this.#finalClose = true;
    this.#callbacks.onclose?.(event ?? { code: 1000, reason: this.#reason });
  }

  #becomeOpen(reason: string): void {
    const gen = this.#current;
    this.#setState("open", reason);
    if (!gen) return;
    const trouble = gen.trouble;
    if (trouble) {
      // Warned or closed while it was being opened: the queue waits for the next socket
      // (after this resume has finished: a new task).
      setTimeout(() => void this.#resume(trouble), 0);
      return;
    }
    const queued = this.#queue;
    this.#queue = [];
    const session = gen.session;
    if (session) for (const send of queued) send(session);
    this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const token = this.#source.token;
    if (!token || typeof token.expireTime !== "string") return;
    const expiry = Date.parse(token.expireTime);
    // A renewal that cannot reach further (the conversation's cap) is not repeated: at the
    // cap the service ends the session and the renewal that follows says why.
    if (!(expiry > this.#lastExpiry)) return;
    this.#lastExpiry = expiry;
    const delay = Math.max(0, this.#source.msUntil(token.expireTime) - this.#renewBeforeMs);
    this.#timer = setTimeout(() => void this.#resume("the token expires soon"), Math.min(delay, 2 ** 31 - 1));
    unref(this.#timer);
  }

  #retire(gen: Generation | null): Promise<LiveCloseEvent | undefined> {
    if (!gen) return Promise.resolve(undefined);
    if (gen.retired) return gen.closed;
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

  #resume(reason: string): Promise<void> | null {
    if (this.#resuming || this.#state !== "open") return this.#resuming;
    this.#resuming = this.#resumeNow(reason).finally(() => {
      this.#resuming = null;
    });
    return this.#resuming;
  }

  // `this.#state` is re-read after each await: the app may close the session meanwhile.
  #still(): boolean {
    return this.#state === "resuming";
  }

  async #resumeNow(reason: string): Promise<void> {
    clearTimeout(this.#timer);
    this.#setState("resuming", reason);
    let lastError: unknown = null;
    for (let attempt = 0; attempt < this.#resumeAttempts; attempt += 1) {
      if (attempt > 0) await sleep(DEFAULT_BACKOFF_MS * 2 ** (attempt - 1));
      if (!this.#still()) return this.#ended();
      try {
        await this.#source.renew();
      } catch (err) {
        this.#fail(err); // 401, 403 (the cap), or the broker out of reach for good
        return;
      }
      if (!this.#still()) return this.#ended();
      // The service refuses a resume while the old socket is open: close it and wait.
      await within(this.#retire(this.#current), this.#closeTimeoutMs);
      if (!this.#still()) return this.#ended();
      if (!this.#handle) {
        this.#fail(new Error(`${reason}; the session cannot be resumed (no resumption handle yet)`));
        return;
      }
      try {
        await this.#open(this.#handle);
      } catch (err) {
        lastError = err; // e.g. refused: try again with a fresh token
        continue;
      }
      if (!this.#still()) return this.#ended();
      this.#becomeOpen(`resumed after ${reason}`);
      return;
    }
    this.#fail(lastError ?? new Error(`${reason}; resuming failed`));
  }

  // The app closed the session while it was resuming: close what is open, then onclose.
  #ended(): void {
    if (this.#state === "closed") {
      void within(this.#retire(this.#current), this.#closeTimeoutMs).then((event) => this.#finish(event));
    }
  }

  #fail(err: unknown): void {
    if (this.#state === "closed" || this.#state === "failed") return;
    clearTimeout(this.#timer);
    const reason = messageOf(err);
    this.#setState("failed", reason);
    const gen = this.#current;
    this.#queue = [];
    if (gen?.setup) {
      void this.#retire(gen).then((event) => this.#finish(event));
    } else if (this.#opened) {
      this.#finish({ code: 1006, reason });
    }
  }

  #send(send: Send): void {
    const gen = this.#current;
    if (this.#state === "open" && gen?.session && !gen.trouble) {
      send(gen.session);
    } else if (this.#state === "open" || this.#state === "resuming" || this.#state === "connecting") {
      this.#queue.push(send);
    } else {
      throw new Error(`the live session is ${this.#state}${this.#reason ? `: ${this.#reason}` : ""}`);
    }
  }

  /** As `Session.sendClientContent`; queued while the session resumes. */
  sendClientContent(params: LiveSendClientContentParameters): void {
    this.#send((session) => session.sendClientContent(params));
  }

  /** As `Session.sendRealtimeInput`; queued while the session resumes. */
  sendRealtimeInput(params: LiveSendRealtimeInputParameters): void {
    this.#send((session) => session.sendRealtimeInput(params));
  }

  /** As `Session.sendToolResponse`; queued while the session resumes. */
  sendToolResponse(params: LiveSendToolResponseParameters): void {
    this.#send((session) => session.sendToolResponse(params));
  }

  /** End the session (state "closed"); `callbacks.onclose` runs once the socket has closed. */
  close(): void {
    if (this.#state === "closed" || this.#state === "failed") return;
    clearTimeout(this.#timer);
    this.#queue = [];
    this.#setState("closed", "closed by the app");
    const gen = this.#current;
    if (gen?.setup) void this.#retire(gen).then((event) => this.#finish(event));
  }
}

/**
 * Open a Gemini Live session with tokens from `source`, kept alive across token expiry,
 * `goAway` and unexpected closes by renewing and resuming.
 *
 * @param source Where the tokens come from.
 * @param options The SDK class, the model, its config and the app's callbacks.
 * @returns The session, once the first socket is open and set up.
 * @throws TokenError when the first token cannot be had; the SDK's error when the first
 *   socket is refused (the state is then "failed").
 */
export async function connectLive(source: TokenSource, options: ConnectLiveOptions): Promise<LiveConnection> {
  if (!(source instanceof TokenSource)) throw new TypeError("connectLive: source must be a TokenSource");
  const given: Partial<ConnectLiveOptions> = options ?? {};
  if (typeof given.GoogleGenAI !== "function") {
    throw new TypeError('connectLive: pass GoogleGenAI (import { GoogleGenAI } from "@google/genai")');
  }
  if (typeof given.model !== "string" || given.model === "") {
    throw new TypeError("connectLive: model must be a non-empty string");
  }
  const live = new LiveConnection(source, options);
  await live._start();
  options.callbacks?.onopen?.();
  return live;
}
