// gemini-tokens/audio's types.
import type { Blob as GenAIBlob, LiveServerMessage } from "@google/genai";

import { TokenSource, connectLive } from "gemini-tokens";
import { GoogleGenAI } from "@google/genai";
import {
  Microphone,
  PcmEncoder,
  Player,
  Resampler,
  base64ToBytes,
  bytesToBase64,
  floatTo16BitPCM,
  pcm16ToFloat32,
  resample,
} from "gemini-tokens/audio";

async function voice(): Promise<void> {
  const player = new Player();
  const live = await connectLive(new TokenSource("/token"), {
    GoogleGenAI,
    model: "m",
    callbacks: {
      onmessage: (message: LiveServerMessage) => {
        if (message.serverContent?.interrupted) player.interrupt();
        for (const part of message.serverContent?.modelTurn?.parts ?? []) player.play(part.inlineData);
      },
    },
  });
  const microphone = await Microphone.start({ live, deviceId: "default", chunkMs: 20 });
  const chunks: GenAIBlob[] = [];
  const local = await Microphone.start({ onchunk: (chunk) => chunks.push(chunk) });
  const active: boolean = microphone.active;
  microphone.stop();
  local.stop();
  await player.close();
  console.log(active);

  // @ts-expect-error a misspelt option
  await Microphone.start({ device: "default" });
  // @ts-expect-error `live` must take realtime input
  await Microphone.start({ live: { send: () => undefined } });
  // @ts-expect-error play() takes an inline Blob, not bytes
  player.play(new Uint8Array(4));
  // @ts-expect-error not a Player option
  new Player({ rate: 24_000 });
}

const pcm: Int16Array = floatTo16BitPCM(new Float32Array(4));
const floats: Float32Array = pcm16ToFloat32(base64ToBytes(bytesToBase64(new Uint8Array(4))));
const down: Float32Array = resample(floats, 48_000, 16_000);
const stream: Float32Array = new Resampler(44_100, 16_000).process(down);
const encoded: GenAIBlob[] = new PcmEncoder({ inputRate: 48_000 }).push(stream);

export { encoded, pcm, voice };
