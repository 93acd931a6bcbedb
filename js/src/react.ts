// gemini-tokens/react: useLiveSession, a live session as React state. React is an optional
// peer: only this entry imports it.

import { useCallback, useEffect, useRef, useSyncExternalStore } from "react";

import type { LiveServerMessage } from "@google/genai";

import { connectLive } from "./live.js";
import type { ConnectLiveOptions, LiveCloseEvent, LiveConnection, LiveState } from "./live.js";
import type { TokenSource } from "./token-source.js";

/** The hook's state: a session's `LiveState`, or "idle" before the first `connect()`. */
export type LiveSessionState = LiveState | "idle";

/** What `useLiveSession` renders from. */
export interface LiveSessionSnapshot {
  /** "idle" until `connect()`; then the session's state. */
  readonly state: LiveSessionState;
  /** Why the state last changed (show it on "failed"). */
  readonly reason: string;
  /** The session once open (also while it resumes: sends are queued), else null. */
  readonly live: LiveConnection | null;
}

/** What `useLiveSession` returns. */
export interface UseLiveSession extends LiveSessionSnapshot {
  /** Open the session (a no-op while one is connecting or open); resolves to it, or to null on failure. */
  connect: () => Promise<LiveConnection | null>;
  /** Close the session (or give up the connecting one). */
  close: () => void;
}

function messageOf(err: unknown): string {
  return err instanceof Error && err.message ? err.message : String(err);
}

const IDLE: LiveSessionSnapshot = Object.freeze({ state: "idle", reason: "", live: null });

/**
 * The hook's logic without React, for `useSyncExternalStore`: one session at a time, whose
 * callbacks are read from the latest `options` (so a render's fresh closures are the ones
 * called), and which is closed on `dispose()`. Exported for tests and other frameworks.
 */
export class LiveSessionController {
  /** The token source the next `connect()` uses. */
  source: TokenSource;
  /** The options the next `connect()` uses; callbacks are read from here when called. */
  options: ConnectLiveOptions;
  #snapshot: LiveSessionSnapshot = IDLE;
  readonly #listeners = new Set<() => void>();
  #attempt = 0;
  #connecting: Promise<LiveConnection | null> | null = null;
  #live: LiveConnection | null = null;
  #disposed = false;

  constructor(source: TokenSource, options: ConnectLiveOptions) {
    this.source = source;
    this.options = options;
  }

  /** Subscribe to snapshot changes; returns the unsubscribe function. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  /** The current snapshot (the same object until something changes). */
  readonly getSnapshot = (): LiveSessionSnapshot => this.#snapshot;

  #set(state: LiveSessionState, reason: string): void {
    const active = state === "open" || state === "resuming";
    const live = active ? this.#live : null;
    const now = this.#snapshot;
    if (now.state === state && now.reason === reason && now.live === live) return;
    this.#snapshot = Object.freeze({ state, reason, live });
    for (const listener of [...this.#listeners]) listener();
  }

  /** Open a session, unless one is connecting or open: then that one. */
  connect(): Promise<LiveConnection | null> {
    if (this.#connecting) return this.#connecting;
    const current = this.#live;
    if (current && (current.state === "open" || current.state === "resuming")) return Promise.resolve(current);
    if (this.#disposed) return Promise.resolve(null); // unmounted: nothing would close it
    this.#live = null;
    const attempt = ++this.#attempt;
    const mine = (): boolean => attempt === this.#attempt;
    // Each callback reads the latest options when it is called: no stale closures.
    const latest = (): ConnectLiveOptions => this.options;
    const options: ConnectLiveOptions = {
      ...this.options,
      callbacks: {
        onopen: () => {
          if (mine()) latest().callbacks?.onopen?.();
        },
        onmessage: (message: LiveServerMessage) => {
          if (mine()) latest().callbacks?.onmessage?.(message);
        },
        onerror: (event: ErrorEvent) => {
          if (mine()) latest().callbacks?.onerror?.(event);
        },
        onclose: (event: LiveCloseEvent) => {
          if (mine()) latest().callbacks?.onclose?.(event);
        },
      },
      onstatechange: (state: LiveState, reason: string) => {
        if (!mine()) return;
        this.#set(state, reason);
        latest().onstatechange?.(state, reason);
      },
    };
    this.#set("connecting", "starting");
    const connecting = connectLive(this.source, options).then(
      (live) => {
        if (!mine() || this.#disposed) {
          live.close(); // given up (closed or unmounted) while it was connecting
          return null;
        }
        this.#live = live;
        this.#set(live.state, live.reason);
        return live;
      },
      (err: unknown) => {
        // onstatechange has said "failed" already, unless the options were refused.
        if (mine() && this.#snapshot.state !== "failed") this.#set("failed", messageOf(err));
        return null;
      },
    );
    this.#connecting = connecting;
    void connecting.finally(() => {
      if (this.#connecting === connecting) this.#connecting = null;
    });
    return connecting;
  }

  /** Close the session, or give up the one connecting (it is closed once it opens). */
  close(): void {
    const live = this.#live;
    if (live) {
      this.#live = null;
      // Its onstatechange says "closed"; one that has failed keeps saying why.
      if (live.state !== "closed" && live.state !== "failed") live.close();
      return;
    }
    if (this.#connecting) {
      this.#attempt += 1; // its callbacks are ignored from now on
      this.#connecting = null;
      this.#set("closed", "closed by the app");
    }
  }

  /** Mounted (again): sessions may be opened. */
  attach(): void {
    this.#disposed = false;
  }

  /** Unmounted: close the session, and any that is still connecting once it opens. */
  dispose(): void {
    this.#disposed = true;
    this.close();
  }
}

/**
 * A Gemini Live session as React state. `connect()` opens it with `connectLive(source,
 * options)`; the component re-renders on each state change; the socket is closed when the
 * component unmounts. `options` are read at `connect()`, its callbacks whenever they are
 * called (the latest render's).
 *
 * ```tsx
 * const source = new TokenSource("/token"); // module level: one per app
 * function Chat() {
 *   const { state, reason, live, connect, close } = useLiveSession(source, {
 *     GoogleGenAI, model: "gemini-live-2.5-flash-preview",
 *     callbacks: { onmessage: (msg) => setText((t) => t + (msg.text ?? "")) },
 *   });
 *   ...
 * }
 * ```
 */
export function useLiveSession(source: TokenSource, options: ConnectLiveOptions): UseLiveSession {
  const ref = useRef<LiveSessionController | null>(null);
  if (ref.current === null) ref.current = new LiveSessionController(source, options);
  const controller = ref.current;
  // The latest render's: read by the next connect() and by the callbacks when they fire.
  controller.source = source;
  controller.options = options;
  const snapshot = useSyncExternalStore(controller.subscribe, controller.getSnapshot, controller.getSnapshot);
  useEffect(() => {
    controller.attach();
    return () => controller.dispose();
  }, [controller]);
  const connect = useCallback(() => controller.connect(), [controller]);
  const close = useCallback(() => controller.close(), [controller]);
  return { state: snapshot.state, reason: snapshot.reason, live: snapshot.live, connect, close };
}
