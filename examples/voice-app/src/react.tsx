// The same session through the React hook: connecting → open, and closed when the component
// unmounts. The states are logged by the parent, which outlives the chat.
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { useLiveSession } from "gemini-tokens/react";
import type { LiveState } from "gemini-tokens";

import { CONFIG, GoogleGenAI, MODEL, post, source } from "./session";

function Chat({ onstate }: { onstate: (state: LiveState, reason: string) => void }) {
  const [turns, setTurns] = useState(0);
  const { state, reason, live, connect, close } = useLiveSession(source, {
    GoogleGenAI,
    model: MODEL,
    config: CONFIG,
    callbacks: {
      onmessage: (message) => {
        if (message.serverContent?.turnComplete) setTurns((n) => n + 1);
      },
    },
    onstatechange: onstate,
  });
  return (
    <section>
      <p className="row">
        <span className="state" data-state={state} data-testid="react-state">
          {state}
        </span>
        <span className="reason" data-testid="react-reason">
          {reason}
        </span>
      </p>
      <p className="row">
        <button data-testid="react-connect" onClick={() => void connect()} disabled={live !== null}>
          Connect
        </button>
        <button
          data-testid="react-say"
          disabled={live === null}
          onClick={() => live?.sendClientContent({ turns: "Hi from React", turnComplete: true })}
        >
          Say hi
        </button>
        <button data-testid="react-close" onClick={close}>
          Hang up
        </button>
        <span>
          turns: <span data-testid="react-turns">{turns}</span>
        </span>
      </p>
    </section>
  );
}

function App() {
  const [mounted, setMounted] = useState(true);
  const [user, setUser] = useState<string | null>(null);
  const [log, setLog] = useState<LiveState[]>([]);
  const onstate = (state: LiveState) => setLog((all) => (all.at(-1) === state ? all : [...all, state]));
  return (
    <>
      <h1>Voice app, with React</h1>
      <p className="hint">
        <code>useLiveSession</code> from <code>gemini-tokens/react</code>: the socket is closed when the
        component unmounts.
      </p>
      <p className="row">
        <button data-testid="react-signin" onClick={() => void post("/signin", { name: "bob" }).then((r) => setUser(r.user))}>
          Sign in
        </button>
        <span data-testid="react-user">{user ? `signed in as ${user}` : "signed out"}</span>
        <button data-testid="react-unmount" onClick={() => setMounted(false)} disabled={!mounted}>
          Unmount the chat
        </button>
      </p>
      {mounted ? <Chat onstate={onstate} /> : <p data-testid="react-unmounted">the chat is unmounted</p>}
      <p className="small">
        States: <span data-testid="react-log">{log.join(" → ")}</span>
      </p>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
