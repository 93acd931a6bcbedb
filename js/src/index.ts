// gemini-tokens: ephemeral tokens from a gemini-tokens broker, and Gemini Live sessions that
// outlast them. No runtime dependencies; `@google/genai` is the app's own (a peer).
//
//   import { TokenSource, connectLive } from "gemini-tokens";
//   import { GoogleGenAI } from "@google/genai";
//
//   const source = new TokenSource("/token", { headers: { Authorization: "Bearer ..." } });
//   const live = await connectLive(source, {
//     GoogleGenAI, model: "gemini-live-2.5-flash-preview",
//     config: { responseModalities: [Modality.TEXT] },
//     callbacks: { onmessage: (msg) => show(msg) },
//     onstatechange: (state, reason) => status(state, reason),
//   });
//   live.sendClientContent({ turns: "Hello", turnComplete: true });
//
// The rules it keeps (docs/live-sessions.md): one token fetch in flight at a time; 401 and
// 403 are final (a TokenError the app can show); 429 and 503 wait for Retry-After (plus
// jitter), unless it is longer than `maxRetryWaitMs` (default 60 s): then final, as for a
// spent minute budget (docs/budgets.md), and `source.budget` shows what is left; network errors and other 5xx back off exponentially; token times are judged on the
// broker's clock (`serverTime`), not the browser's. On `goAway` or an unexpected close the
// live session renews its token through the broker, closes the old socket, waits for it to
// close, and reconnects with the latest resumption handle; the app sees one session.

export { STATUS_NAMES, TokenError, parseRetryAfter } from "./errors.js";
export type { TokenErrorInfo } from "./errors.js";
export { DEFAULT_MAX_RETRY_WAIT_MS, TokenSource } from "./token-source.js";
export type { BrokerBudget, BrokerToken, HeadersLike, RequestOptions, RetryInfo, TokenSourceOptions } from "./token-source.js";
export { LiveConnection, STATES, connectLive } from "./live.js";
export type {
  ConnectLiveOptions,
  GoogleGenAIConstructor,
  LiveCallbacks,
  LiveCloseEvent,
  LiveSession,
  LiveState,
} from "./live.js";
export { VERSION } from "./version.js";
