// What both pages share: the token source (one per app) and the session's options. The
// broker's policy (server.py) locks the model and the settings; the page asks for the same.
import { GoogleGenAI, Modality } from "@google/genai";
import type { LiveConnectConfig } from "@google/genai";
import { TokenSource } from "gemini-tokens";

export const MODEL = "gemini-2.5-flash-native-audio-preview-12-2025";

export const CONFIG: LiveConnectConfig = {
  responseModalities: [Modality.AUDIO],
  inputAudioTranscription: {},
  outputAudioTranscription: {},
};

export { GoogleGenAI };

// The sign-in is a cookie (server.py's toy one), which fetch sends to the same origin: no
// header to add. Signing out makes the broker refuse the next renewal.
export const source = new TokenSource("/token");

/** POST to one of server.py's sign-in routes; the answer's JSON (`{user}`). */
export async function post(path: "/signin" | "/signout", body: unknown = {}): Promise<{ user: string | null }> {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as { user: string | null };
}
