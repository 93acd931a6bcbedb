// Drives the official @google/genai SDK (from the checkout's node_modules) against the
// gemini-tokens emulator, as a browser app's code would, and prints what it saw as JSON.
// Run by tests/test_js_sdk.py with GEMINI_BASE_URL, GEMINI_API_KEY and MODEL set;
// SCENARIO=resume runs only the goAway-and-resume conversation.
import { GoogleGenAI, Modality } from "@google/genai";

const baseUrl = process.env.GEMINI_BASE_URL;
const apiKey = process.env.GEMINI_API_KEY;
const model = process.env.MODEL;
const TIMEOUT_MS = 10000;

const server = new GoogleGenAI({ apiKey, httpOptions: { baseUrl } });

async function mint(config) {
  const token = await server.authTokens.create({
    config: { ...config, httpOptions: { apiVersion: "v1alpha" } },
  });
  return token;
}

// Opens a Live session with a token; collects messages and the close.
async function open(tokenName, config) {
  const ai = new GoogleGenAI({
    apiKey: tokenName,
    httpOptions: { apiVersion: "v1alpha", baseUrl },
  });
  const messages = [];
  const waiters = [];
  let closeInfo = null;
  let resolveClosed;
  const closed = new Promise((resolve) => (resolveClosed = resolve));
  const notify = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const session = await ai.live.connect({
    model,
    config,
    callbacks: {
      onmessage: (message) => {
        messages.push(message);
        notify();
      },
      onerror: () => {},
      onclose: (event) => {
        closeInfo = { code: event.code, reason: event.reason };
        resolveClosed(closeInfo);
        notify();
      },
    },
  });
  // Resolves with the messages from `start` up to the first one `done` accepts.
  const waitFor = (done, start = 0) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timed out waiting")), TIMEOUT_MS);
      const check = () => {
        const index = messages.findIndex((m, i) => i >= start && done(m));
        if (index >= 0) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve(messages.slice(start, index + 1));
        } else if (closeInfo) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`closed ${closeInfo.code} ${closeInfo.reason}`));
        }
      };
      waiters.push(check);
      check();
    });
  const closedWithin = () =>
    Promise.race([
      closed,
      // unref(): a pending timeout must not keep Node running once all is done.
      new Promise((resolve) => setTimeout(() => resolve(null), TIMEOUT_MS).unref()),
    ]);
  return { session, messages, waitFor, closedWithin };
}

const turnComplete = (m) => m.serverContent?.turnComplete === true;
const texts = (ms) =>
  ms.flatMap((m) => m.serverContent?.modelTurn?.parts ?? []).map((p) => p.text ?? "").join("");
const transcript = (ms, which) =>
  ms.map((m) => m.serverContent?.[which]?.text ?? "").join("");

function pcm16(seconds, rate) {
  const samples = new Int16Array(Math.round(seconds * rate));
  for (let i = 0; i < samples.length; i++) {
    samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / rate));
  }
  return Buffer.from(samples.buffer).toString("base64");
}

// Playback data, as an app feeds it to an AudioContext: the SDK's `message.data`.
function playback(ms) {
  const chunks = ms.map((m) => m.data).filter((d) => d !== undefined);
  const bytes = Buffer.concat(chunks.map((d) => Buffer.from(d, "base64")));
  const samples = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  let peak = 0;
  for (const s of samples) peak = Math.max(peak, Math.abs(s));
  const mimeTypes = [
    ...new Set(
      ms.flatMap((m) => m.serverContent?.modelTurn?.parts ?? []).map((p) => p.inlineData?.mimeType)
    ),
  ];
  return { chunks: chunks.length, bytes: bytes.length, peak, mimeTypes };
}

const out = {};

if (process.env.SCENARIO === "resume") {
  // A conversation that outlasts its connection: goAway, close, resume with the handle.
  const token = await mint({
    uses: 1,
    liveConnectConstraints: {
      model,
      config: { responseModalities: [Modality.TEXT], sessionResumption: {} },
    },
  });
  const first = await open(token.name, { responseModalities: [Modality.TEXT] });
  first.session.sendClientContent({ turns: "My name is Ada.", turnComplete: true });
  await first.waitFor(turnComplete);
  const goAway = (await first.waitFor((m) => m.goAway !== undefined))
    .map((m) => m.goAway)
    .filter(Boolean)[0];
  const handles = first.messages
    .map((m) => m.sessionResumptionUpdate)
    .filter((u) => u?.resumable && u.newHandle)
    .map((u) => u.newHandle);
  first.session.close(); // close the old socket before resuming
  await first.closedWithin();
  const second = await open(token.name, {
    responseModalities: [Modality.TEXT],
    sessionResumption: { handle: handles[handles.length - 1] },
  });
  second.session.sendClientContent({ turns: "What is my name?", turnComplete: true });
  out.resume = {
    timeLeft: goAway.timeLeft,
    handles: handles.length,
    reply: texts(await second.waitFor(turnComplete)),
  };
  second.session.close();
  await second.closedWithin();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}

// 1. A text token: locked temperature, integers as @google/genai types them (strings).
const textToken = await mint({
  uses: 1,
  liveConnectConstraints: {
    model,
    config: {
      temperature: 0.2,
      responseModalities: [Modality.TEXT],
      contextWindowCompression: {
        triggerTokens: "25600",
        slidingWindow: { targetTokens: "12800" },
      },
      sessionResumption: {},
    },
  },
  lockAdditionalFields: ["temperature"],
});
out.textToken = { prefix: textToken.name.split("/")[0], uses: textToken.uses ?? null };

// 2. A text turn; the client's temperature is overridden by the lock.
{
  const live = await open(textToken.name, {
    temperature: 0.9,
    responseModalities: [Modality.TEXT],
  });
  live.session.sendClientContent({ turns: "Hello from Node", turnComplete: true });
  const answer = await live.waitFor(turnComplete);
  out.text = {
    setupComplete: live.messages.some((m) => m.setupComplete !== undefined),
    reply: texts(answer),
    handles: live.messages.filter((m) => m.sessionResumptionUpdate?.newHandle).length,
  };
  live.session.close(); // a close frame without a status code
  await live.closedWithin();
}

// 3. The same token again: used up (the SDK rejects connect() when the socket closes
// before setupComplete, quoting the close code and reason).
try {
  const live = await open(textToken.name, { responseModalities: [Modality.TEXT] });
  out.reuse = { connected: true, close: await live.closedWithin() };
} catch (error) {
  out.reuse = { connected: false, error: String(error.message) };
}

// 4. An audio token: a text turn and a streamed audio turn are answered with audio.
const audioToken = await mint({
  uses: 1,
  liveConnectConstraints: {
    model,
    config: {
      responseModalities: [Modality.AUDIO],
      speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: "Kore" } } },
      inputAudioTranscription: {},
      outputAudioTranscription: {},
    },
  },
  lockAdditionalFields: [],
});
{
  const live = await open(audioToken.name, { responseModalities: [Modality.AUDIO] });
  live.session.sendClientContent({ turns: "Say hi", turnComplete: true });
  const spoken = await live.waitFor(turnComplete);
  out.audioTurn = { ...playback(spoken), transcript: transcript(spoken, "outputTranscription") };
  const start = live.messages.length;
  live.session.sendRealtimeInput({
    audio: { data: pcm16(0.5, 16000), mimeType: "audio/pcm;rate=16000" },
  });
  live.session.sendRealtimeInput({ audioStreamEnd: true });
  const heard = await live.waitFor(turnComplete, start);
  out.audioStream = {
    ...playback(heard),
    heard: transcript(heard, "inputTranscription"),
    transcript: transcript(heard, "outputTranscription"),
  };
  live.session.close();
  await live.closedWithin();
}

process.stdout.write(JSON.stringify(out) + "\n");
