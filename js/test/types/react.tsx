// gemini-tokens/react's types.
import { GoogleGenAI } from "@google/genai";
import { useState } from "react";

import { TokenSource } from "gemini-tokens";
import type { LiveConnection } from "gemini-tokens";
import { useLiveSession } from "gemini-tokens/react";
import type { LiveSessionState, UseLiveSession } from "gemini-tokens/react";

const source = new TokenSource("/token");

export function Chat(): React.JSX.Element {
  const [text, setText] = useState("");
  const session: UseLiveSession = useLiveSession(source, {
    GoogleGenAI,
    model: "gemini-live-2.5-flash-preview",
    callbacks: { onmessage: (message) => setText((t) => t + (message.text ?? "")) },
  });
  const { state, reason, live, connect, close } = session;
  const current: LiveSessionState = state;
  const open: LiveConnection | null = live;
  // @ts-expect-error a state that does not exist
  const never = state === "disconnected";
  // @ts-expect-error a misspelt option
  useLiveSession(source, { GoogleGenAI, model: "m", onStateChange: () => undefined });
  return (
    <div>
      <p>{current === "idle" ? "not connected" : `${current}: ${reason}`}</p>
      <p>{text}</p>
      <button onClick={() => void connect()} disabled={open !== null}>Connect</button>
      <button onClick={close}>Hang up</button>
      <button onClick={() => live?.sendClientContent({ turns: "Hello", turnComplete: true })}>Say hello</button>
      {never ? null : null}
    </div>
  );
}
