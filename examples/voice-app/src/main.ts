// The voice app: sign in, connect, a text turn, a voice turn (Microphone in, Player out, the
// transcripts shown), resumption on goAway with the conversation kept, and a sign-out after
// which the broker refuses the next renewal (state "failed", with the broker's reason).
//
// Everything a test reads is in the DOM under a data-testid, and in `window.voiceApp`.
import { connectLive } from "gemini-tokens";
import type { LiveConnection, LiveState } from "gemini-tokens";
import { Microphone, Player } from "gemini-tokens/audio";
import type { LiveServerMessage } from "@google/genai";

import { CONFIG, GoogleGenAI, MODEL, post, source } from "./session";

/** What the page exposes for tests and the benchmark. */
interface VoiceApp {
  /** Every state change: the state, why, and when (epoch milliseconds, sub-ms precision). */
  states: { state: LiveState; reason: string; at: number }[];
  /** Audio chunks handed to the Player (each scheduled right after the one before). */
  chunks: number;
  /** Microphone chunks sent into the session. */
  sent: number;
  /** Completed model turns. */
  turns: number;
}

declare global {
  interface Window {
    voiceApp: VoiceApp;
  }
}

const app: VoiceApp = { states: [], chunks: 0, sent: 0, turns: 0 };
window.voiceApp = app;

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element as T;
}

const ui = {
  name: $<HTMLInputElement>("name"),
  signin: $<HTMLButtonElement>("signin"),
  signout: $<HTMLButtonElement>("signout"),
  user: $("user"),
  connect: $<HTMLButtonElement>("connect"),
  hangup: $<HTMLButtonElement>("hangup"),
  state: $("state"),
  reason: $("reason"),
  states: $("states"),
  text: $<HTMLInputElement>("text"),
  send: $<HTMLButtonElement>("send"),
  talk: $<HTMLButtonElement>("talk"),
  done: $<HTMLButtonElement>("done"),
  mic: $("mic"),
  turns: $("turns"),
  chunks: $("chunks"),
  connections: $("connections"),
  transcript: $("transcript"),
};

let live: LiveConnection | null = null;
let player: Player | null = null;
let microphone: Microphone | null = null;
// The model's words of the turn in progress (transcription arrives in pieces).
let modelLine: HTMLLIElement | null = null;

function line(role: "user" | "model", text: string): HTMLLIElement {
  const item = document.createElement("li");
  item.dataset.role = role;
  item.dataset.testid = `${role}-line`;
  item.textContent = text;
  ui.transcript.append(item);
  return item;
}

function showState(state: LiveState, reason: string): void {
  app.states.push({ state, reason, at: performance.timeOrigin + performance.now() });
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.reason.textContent = reason;
  // The history without repeats ("connecting" is said twice: fetching, then opening).
  const seen = app.states.map((s) => s.state).filter((s, i, all) => i === 0 || all[i - 1] !== s);
  ui.states.textContent = seen.join(" → ");
  if (live) ui.connections.textContent = String(live.connections);
  render();
}

function render(): void {
  const active = live !== null && (live.state === "open" || live.state === "resuming");
  ui.connect.disabled = active || ui.state.textContent === "connecting";
  ui.hangup.disabled = !active;
  ui.send.disabled = !active;
  ui.talk.disabled = !active || microphone !== null;
  ui.done.disabled = microphone === null;
}

function onmessage(message: LiveServerMessage): void {
  const content = message.serverContent;
  if (!content) return;
  if (content.interrupted) player?.interrupt(); // the user barged in
  for (const part of content.modelTurn?.parts ?? []) {
    if (part.inlineData?.data && player) {
      player.play(part.inlineData);
      app.chunks += 1;
      ui.chunks.textContent = String(app.chunks);
    }
  }
  if (content.inputTranscription?.text) line("user", content.inputTranscription.text);
  const words = content.outputTranscription?.text;
  if (words) {
    modelLine ??= line("model", "");
    modelLine.textContent += words;
  }
  if (content.turnComplete) {
    modelLine = null;
    app.turns += 1;
    ui.turns.textContent = String(app.turns);
  }
}

async function refreshUser(): Promise<void> {
  const response = await fetch("/me");
  const { user } = (await response.json()) as { user: string | null };
  ui.user.textContent = user ? `signed in as ${user}` : "signed out";
}

ui.signin.addEventListener("click", async () => {
  const { user } = await post("/signin", { name: ui.name.value });
  ui.user.textContent = `signed in as ${user}`;
});

ui.signout.addEventListener("click", async () => {
  // The session stays open for now: the broker refuses its next renewal (on goAway, or
  // before its token expires), and it fails then, saying why.
  await post("/signout");
  ui.user.textContent = "signed out";
});

ui.connect.addEventListener("click", async () => {
  // Made in the click: browsers let an AudioContext start on a user gesture only.
  player ??= new Player();
  ui.connect.disabled = true;
  app.states = []; // each session's own history
  live = null;
  try {
    live = await connectLive(source, {
      GoogleGenAI,
      model: MODEL,
      config: CONFIG,
      callbacks: { onmessage },
      onstatechange: showState,
    });
  } catch {
    // The state is "failed" and the reason is shown (onstatechange said so).
    live = null;
  }
  if (live) ui.connections.textContent = String(live.connections);
  render();
});

ui.hangup.addEventListener("click", () => {
  microphone?.stop();
  microphone = null;
  live?.close();
  render();
});

ui.send.addEventListener("click", () => {
  const text = ui.text.value.trim();
  if (!live || !text) return;
  line("user", text);
  live.sendClientContent({ turns: text, turnComplete: true });
});

ui.talk.addEventListener("click", async () => {
  if (!live || microphone) return;
  const session = live;
  ui.talk.disabled = true;
  try {
    microphone = await Microphone.start({
      live: session,
      audioContext: player?.context, // one context for both directions
      onchunk: () => {
        app.sent += 1;
        ui.mic.textContent = `microphone on: ${app.sent} chunks sent`;
      },
      onerror: () => {
        microphone = null;
        ui.mic.textContent = "microphone off (the session ended)";
        render();
      },
    });
    ui.mic.textContent = "microphone on";
  } catch (err) {
    ui.mic.textContent = `no microphone: ${err instanceof Error ? err.message : String(err)}`;
  }
  render();
});

ui.done.addEventListener("click", () => {
  if (!microphone) return;
  microphone.stop();
  microphone = null;
  ui.mic.textContent = `microphone off: ${app.sent} chunks sent`;
  // Without voice activity detection on the page, the end of the stream ends the turn.
  live?.sendRealtimeInput({ audioStreamEnd: true });
  render();
});

render();
void refreshUser();
