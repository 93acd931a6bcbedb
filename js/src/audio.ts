// gemini-tokens/audio: the microphone into a Live session (16 kHz 16-bit PCM chunks, made in
// an AudioWorklet) and the service's 24 kHz replies played gap-free on one AudioContext.

import type { Blob as GenAIBlob, LiveSendRealtimeInputParameters } from "@google/genai";

import { PcmEncoder, base64ToBytes, pcm16ToFloat32 } from "./pcm.js";

export {
  PcmEncoder,
  Resampler,
  base64ToBytes,
  bytesToBase64,
  floatTo16BitPCM,
  int16ToBytes,
  pcm16ToFloat32,
  resample,
} from "./pcm.js";
export type { PcmEncoderOptions } from "./pcm.js";

/** Where microphone chunks go: a `LiveConnection`, or `@google/genai`'s own `Session`. */
export interface RealtimeInputSink {
  sendRealtimeInput(params: LiveSendRealtimeInputParameters): void;
}

/** Options of `Microphone.start(options)`. */
export interface MicrophoneOptions {
  /** The live session each chunk is sent to, as `live.sendRealtimeInput({audio: chunk})`. */
  live?: RealtimeInputSink;
  /** Told each chunk, `{data: base64, mimeType: "audio/pcm;rate=16000"}` (with or without `live`). */
  onchunk?: (chunk: GenAIBlob) => void;
  /** Told when sending fails (the session has ended): the microphone stops then. */
  onerror?: (error: unknown) => void;
  /** The input device (from `navigator.mediaDevices.enumerateDevices()`); default: the system's. */
  deviceId?: string;
  /** Extra `getUserMedia` audio constraints (echo cancellation, noise suppression, ... are on). */
  constraints?: MediaTrackConstraints;
  /** The length of one chunk, in milliseconds (default 40). */
  chunkMs?: number;
  /** The chunks' sample rate (default 16 000 Hz). */
  sampleRate?: number;
  /** An AudioContext to share (e.g. with a `Player`); `stop()` leaves it open. */
  audioContext?: AudioContext;
  /** Where `getUserMedia` comes from (default `navigator.mediaDevices`; tests pass a fake). */
  mediaDevices?: Pick<MediaDevices, "getUserMedia">;
}

const PROCESSOR = "gemini-tokens-capture";
const FRAME = 512; // samples per message from the worklet: about 11 ms at 48 kHz

// The worklet copies the input's first channel into frames and posts them (transferred) to
// the page, where the tested PcmEncoder resamples and encodes them. Inline, served as a Blob
// URL: no extra file to host (a Content-Security-Policy must allow `blob:` scripts).
const WORKLET_SOURCE = `registerProcessor(${JSON.stringify(PROCESSOR)}, class extends AudioWorkletProcessor {
  constructor() { super(); this.frame = new Float32Array(${FRAME}); this.filled = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.frame[this.filled++] = channel[i];
        if (this.filled === this.frame.length) {
          this.port.postMessage(this.frame, [this.frame.buffer]);
          this.frame = new Float32Array(${FRAME});
          this.filled = 0;
        }
      }
    }
    return true;
  }
});
`;

// One module load per context: registering the processor twice is an error.
const loaded = new WeakMap<BaseAudioContext, Promise<void>>();

function loadWorklet(context: BaseAudioContext): Promise<void> {
  let done = loaded.get(context);
  if (!done) {
    const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "text/javascript" }));
    done = context.audioWorklet.addModule(url).finally(() => URL.revokeObjectURL(url));
    done.catch(() => loaded.delete(context)); // a failed load may be tried again
    loaded.set(context, done);
  }
  return done;
}

/**
 * The microphone, streaming 16 kHz 16-bit PCM chunks into a live session (and/or to a
 * callback) until `stop()`. Made by `Microphone.start()`.
 */
export class Microphone {
  readonly #stream: MediaStream;
  readonly #context: AudioContext;
  readonly #ownsContext: boolean;
  readonly #source: MediaStreamAudioSourceNode;
  readonly #node: AudioWorkletNode;
  readonly #encoder: PcmEncoder;
  readonly #options: MicrophoneOptions;
  #active = true;
  #failed = false;

  private constructor(
    stream: MediaStream,
    context: AudioContext,
    ownsContext: boolean,
    source: MediaStreamAudioSourceNode,
    node: AudioWorkletNode,
    options: MicrophoneOptions,
  ) {
    this.#stream = stream;
    this.#context = context;
    this.#ownsContext = ownsContext;
    this.#source = source;
    this.#node = node;
    this.#options = options;
    const encoderOptions: { inputRate: number; outputRate?: number; chunkMs?: number } = {
      inputRate: context.sampleRate,
    };
    if (options.sampleRate !== undefined) encoderOptions.outputRate = options.sampleRate;
    if (options.chunkMs !== undefined) encoderOptions.chunkMs = options.chunkMs;
    this.#encoder = new PcmEncoder(encoderOptions);
    node.port.onmessage = (event: MessageEvent<Float32Array>) => {
      for (const chunk of this.#encoder.push(event.data)) {
        if (!this.#active) return;
        this.#deliver(chunk);
      }
    };
    // The device went away (unplugged, permission revoked): nothing more will come.
    for (const track of stream.getAudioTracks()) track.addEventListener("ended", () => this.stop());
  }

  /**
   * Ask for the microphone and start streaming. Call it from a user gesture (a click), so the
   * browser lets the AudioContext run.
   *
   * @throws The browser's error when access is refused (a `NotAllowedError` DOMException) or
   *   there is no microphone; a TypeError on a page without `getUserMedia` (not https).
   */
  static async start(options: MicrophoneOptions = {}): Promise<Microphone> {
    if (options.chunkMs !== undefined && !(options.chunkMs > 0)) {
      throw new RangeError("Microphone: chunkMs must be a positive number");
    }
    const devices = options.mediaDevices ?? globalThis.navigator?.mediaDevices;
    if (!devices || typeof devices.getUserMedia !== "function") {
      throw new TypeError("Microphone: getUserMedia is not available here (it needs https or localhost)");
    }
    const audio: MediaTrackConstraints = {
      channelCount: 1,
      echoCancellation: true,
      noiseSuppression: true,
      autoGainControl: true,
      ...(options.deviceId ? { deviceId: { exact: options.deviceId } } : {}),
      ...options.constraints,
    };
    const stream = await devices.getUserMedia({ audio });
    const context = options.audioContext ?? new AudioContext();
    const owns = options.audioContext === undefined;
    try {
      // Not awaited: outside a user gesture resume() waits for one, and capture can be set up
      // meanwhile (it runs once the context does).
      if (context.state === "suspended") void context.resume().catch(() => undefined);
      await loadWorklet(context);
      const source = context.createMediaStreamSource(stream);
      // No outputs: the node is processed anyway, and nothing reaches the speakers.
      const node = new AudioWorkletNode(context, PROCESSOR, {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
      });
      const microphone = new Microphone(stream, context, owns, source, node, options);
      source.connect(node);
      return microphone;
    } catch (err) {
      for (const track of stream.getTracks()) track.stop();
      if (owns) void context.close().catch(() => undefined);
      throw err;
    }
  }

  /** True until `stop()` (or the device ended). */
  get active(): boolean {
    return this.#active;
  }

  /** The AudioContext the microphone runs on. */
  get context(): AudioContext {
    return this.#context;
  }

  #deliver(chunk: GenAIBlob): void {
    if (this.#failed) return;
    try {
      this.#options.live?.sendRealtimeInput({ audio: chunk });
      this.#options.onchunk?.(chunk);
    } catch (err) {
      // The session has ended (closed or failed): stop recording rather than throw per chunk.
      this.#failed = true;
      this.stop();
      if (this.#options.onerror) this.#options.onerror(err);
      else console.warn("gemini-tokens: the microphone stopped:", err);
    }
  }

  /** Stop recording: the last partial chunk is sent, the device released. Idempotent. */
  stop(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#node.port.onmessage = null;
    const rest = this.#encoder.flush();
    if (rest) this.#deliver(rest);
    this.#source.disconnect();
    this.#node.disconnect();
    for (const track of this.#stream.getTracks()) track.stop();
    if (this.#ownsContext) void this.#context.close().catch(() => undefined);
  }
}

/** Options of `new Player(options)`. */
export interface PlayerOptions {
  /** An AudioContext to share (e.g. with a `Microphone`); `close()` leaves it open. */
  audioContext?: AudioContext;
  /** Where the sound goes (default the context's destination). */
  destination?: AudioNode;
  /** The rate of chunks whose mimeType names none (default 24 000 Hz, the Live API's). */
  sampleRate?: number;
}

/**
 * Plays the Live API's audio replies: each 16-bit PCM chunk is scheduled right after the one
 * before on one AudioContext timeline, so they join without gaps; `interrupt()` stops them
 * all when the user barges in (`serverContent.interrupted`).
 */
export class Player {
  #context: AudioContext | null;
  readonly #ownsContext: boolean;
  readonly #destination: AudioNode | undefined;
  readonly #sampleRate: number;
  readonly #sources = new Set<AudioBufferSourceNode>();
  #nextTime = 0;
  #closed = false;

  constructor(options: PlayerOptions = {}) {
    this.#context = options.audioContext ?? null;
    this.#ownsContext = options.audioContext === undefined;
    this.#destination = options.destination;
    this.#sampleRate = options.sampleRate ?? 24_000;
    if (!(this.#sampleRate > 0)) throw new RangeError("Player: sampleRate must be a positive number");
  }

  /** The AudioContext it plays on (made on first use unless one was given). */
  get context(): AudioContext {
    if (!this.#context) this.#context = new AudioContext();
    return this.#context;
  }

  /** True while chunks are scheduled or sounding. */
  get playing(): boolean {
    return this.#sources.size > 0;
  }

  /**
   * Schedule one chunk of the service's audio, e.g. a part's `inlineData`. A chunk without
   * data is skipped.
   *
   * @throws TypeError for audio that is not 16-bit PCM (`audio/pcm`), or after `close()`.
   */
  play(inlineData: GenAIBlob | undefined): void {
    if (this.#closed) throw new TypeError("Player: play() after close()");
    if (!inlineData?.data) return;
    const mimeType = inlineData.mimeType ?? "";
    if (mimeType && !/^audio\/(pcm|l16)\b/i.test(mimeType)) {
      throw new TypeError(`Player: only 16-bit PCM audio (audio/pcm) can be played, not ${mimeType}`);
    }
    const rate = Number(/rate=(\d+)/i.exec(mimeType)?.[1] ?? this.#sampleRate);
    const samples = pcm16ToFloat32(base64ToBytes(inlineData.data));
    if (samples.length === 0) return;
    const context = this.context;
    if (context.state === "suspended") void context.resume().catch(() => undefined);
    const buffer = context.createBuffer(1, samples.length, rate);
    buffer.getChannelData(0).set(samples);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.#destination ?? context.destination);
    // Right after the chunk before; after a pause (or the first time), now.
    const start = Math.max(this.#nextTime, context.currentTime);
    source.start(start);
    this.#nextTime = start + buffer.duration;
    this.#sources.add(source);
    source.onended = () => {
      this.#sources.delete(source);
      source.disconnect();
    };
  }

  /** Stop everything scheduled or sounding, at once (for `serverContent.interrupted`). */
  interrupt(): void {
    for (const source of this.#sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // not started yet in some browsers' view, or already stopped
      }
      source.disconnect();
    }
    this.#sources.clear();
    this.#nextTime = 0;
  }

  /** Stop playing and close the AudioContext it made (a shared one stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.interrupt();
    if (this.#ownsContext && this.#context) await this.#context.close();
  }
}
