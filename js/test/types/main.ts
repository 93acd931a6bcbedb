import { GoogleGenAI, Modality } from "@google/genai";
import type { LiveServerMessage } from "@google/genai";

import {
  STATES,
  STATUS_NAMES,
  TokenError,
  TokenSource,
  VERSION,
  connectLive,
  parseRetryAfter,
} from "gemini-tokens";
import type {
  BrokerBudget,
  BrokerToken,
  ConnectLiveOptions,
  LiveConnection,
  LiveSession,
  LiveState,
  TokenSourceOptions,
} from "gemini-tokens";

const version: string = VERSION;
const name: string | undefined = STATUS_NAMES[405];
const delay: number | undefined = parseRetryAfter("2", null, Date.now());

// ------------------------------------------------------------------ TokenSource's options

const options: TokenSourceOptions = {
  headers: async () => ({ Authorization: "Bearer x" }),
  config: { speechConfig: "Puck" },
  retries: 3,
  backoffMs: 100,
  maxBackoffMs: 1000,
  credentials: "include",
  onretry: ({ status, delayMs, attempt, message }) => console.log(status, delayMs, attempt, message),
};
const source = new TokenSource("/token", options);
new TokenSource(new URL("https://api.example.com/token"), { headers: new Headers() });
new TokenSource("/token", { fetch, sleep: (ms, signal) => new Promise((r) => setTimeout(r, ms, signal)) });

// @ts-expect-error a misspelt option
new TokenSource("/token", { header: { Authorization: "Bearer x" } });
// @ts-expect-error a misspelt option
new TokenSource("/token", { retry: 3 });
// @ts-expect-error an option of the wrong type
new TokenSource("/token", { retries: "3" });
// @ts-expect-error not a url
new TokenSource(42);

// ------------------------------------------------------------------ the broker's answer

async function answer(): Promise<void> {
  const token: BrokerToken = await source.get();
  const fields: [string, string, string, string, string, number] = [
    token.name,
    token.liveUrl,
    token.expireTime,
    token.newSessionExpireTime,
    token.serverTime,
    token.uses,
  ];
  const session: string | undefined = token.session;
  const mask: string | undefined = token.fieldMask;
  const ms: number = source.msUntil(token.expireTime);
  console.log(fields, session, mask, ms, source.serverNow());

  // @ts-expect-error a misspelt field of the answer
  console.log(token.expiresAt);
  // @ts-expect-error a misspelt field of the answer
  console.log(token.live_url);
  // @ts-expect-error no index signature: an unknown field is an error, not `any`
  console.log(token["sessionId"]);
  // @ts-expect-error session is only there with renewal on: not a plain string
  const always: string = token.session;
  // @ts-expect-error the answer is read-only
  token.name = "auth_tokens/other";
  const latest: BrokerToken | null = source.token;
  const budget: { remainingMinutes: number; resetsAt: string } | undefined = token.budget;
  const shown: BrokerBudget | undefined = source.budget;
  // @ts-expect-error the budget may be absent (a broker without budgets)
  const minutes: number = token.budget.remainingMinutes;
  // @ts-expect-error the latest budget is read-only
  source.budget = undefined;
  console.log(budget, shown?.remainingMinutes, shown?.resetsAt, minutes);
  console.log(always, latest, await source.renew({ signal: AbortSignal.timeout(1000) }));
}

// ------------------------------------------------------------------ TokenError

function explain(err: unknown): string {
  if (err instanceof TokenError) {
    const facts: [number, string, boolean, number | undefined] = [err.status, err.code, err.retryable, err.retryAfterMs];
    return `${err.message} ${facts.join(" ")}`;
  }
  return String(err);
}

// ------------------------------------------------------------------ connectLive

async function live(): Promise<LiveConnection> {
  const seen: LiveServerMessage[] = [];
  const connection = await connectLive(source, {
    GoogleGenAI, // the real class is accepted
    model: "gemini-live-2.5-flash-preview",
    config: { responseModalities: [Modality.AUDIO] },
    callbacks: {
      onopen: () => undefined,
      onmessage: (message) => {
        seen.push(message);
        console.log(message.serverContent?.modelTurn?.parts?.[0]?.inlineData?.data);
      },
      onerror: (event) => console.log(event.message),
      onclose: (event) => console.log(event.code, event.reason),
    },
    onstatechange: (state, reason) => {
      // @ts-expect-error a state that does not exist
      if (state === "opened") console.log(reason);
      if (state === "failed") console.log(reason);
    },
    renewBeforeMs: 30_000,
  });
  connection.sendClientContent({ turns: "Hello", turnComplete: true });
  connection.sendRealtimeInput({ audio: { data: "AAAA", mimeType: "audio/pcm;rate=16000" } });
  connection.sendToolResponse({ functionResponses: [{ id: "1", name: "f", response: {} }] });
  // @ts-expect-error a comparison with a state that does not exist
  if (connection.state === "reconnecting") console.log("never");
  const state: LiveState = connection.state;
  const count: number = connection.connections;
  const asSession: LiveSession = connection;
  asSession.close();
  console.log(state, count, seen);
  return connection;
}

// @ts-expect-error a misspelt option of connectLive
connectLive(source, { GoogleGenAI, model: "m", renewBefore: 30_000 });
// @ts-expect-error a misspelt callback
connectLive(source, { GoogleGenAI, model: "m", callbacks: { onMessage: () => undefined } });
// @ts-expect-error the model is required
connectLive(source, { GoogleGenAI });
// @ts-expect-error a config field that LiveConnectConfig does not have
connectLive(source, { GoogleGenAI, model: "m", config: { responseModality: ["AUDIO"] } });

const liveOptions: ConnectLiveOptions = { GoogleGenAI, model: "m" };
// @ts-expect-error "idle" is the React hook's, not a session's
const notAState: LiveState = "idle";
const states: readonly LiveState[] = STATES;
// @ts-expect-error STATES is read-only
STATES.push("open");

export { answer, explain, live, liveOptions, name, delay, notAState, states, version };
