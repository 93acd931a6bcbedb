// Pure PCM helpers: float <-> 16-bit samples, resampling, base64. Exported from
// `gemini-tokens/audio` and tested without an AudioContext.

import type { Blob as GenAIBlob } from "@google/genai";

/** Float samples in [-1, 1] to 16-bit signed integers (clamped). */
export function floatTo16BitPCM(samples: Float32Array): Int16Array {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i += 1) {
    const s = Math.max(-1, Math.min(1, samples[i] ?? 0));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out;
}

/** 16-bit signed samples to their little-endian bytes (the wire's order, whatever the CPU's). */
export function int16ToBytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i += 1) view.setInt16(i * 2, samples[i] ?? 0, true);
  return bytes;
}

/** Little-endian 16-bit PCM bytes to float samples in [-1, 1) (an odd last byte is dropped). */
export function pcm16ToFloat32(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i += 1) out[i] = view.getInt16(i * 2, true) / 0x8000;
  return out;
}

/** Bytes to base64 (the `data` of an inline audio chunk). */
export function bytesToBase64(bytes: Uint8Array): string {
  let text = "";
  // In slices: String.fromCharCode with too many arguments overflows the stack.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/** Base64 to bytes. */
export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A streaming resampler for one channel: feed it blocks, get blocks at the new rate.
 * Down-sampling averages the input samples each output sample covers (a box filter, enough
 * against aliasing for speech); up-sampling interpolates linearly. The last input samples of
 * a block are kept for the next one, so blocks join without clicks.
 */
export class Resampler {
  // Positions are counted in 1/`#den` of an input sample, whole numbers: blocks fed one by
  // one land on exactly the samples the whole stream would (no float drift at the edges).
  readonly #num: number;
  readonly #den: number;
  #rest: Float32Array = new Float32Array(0);
  #pos = 0;

  /**
   * @param fromRate The input's sample rate, in Hz (rounded to a whole number).
   * @param toRate The output's sample rate, in Hz (rounded to a whole number).
   */
  constructor(fromRate: number, toRate: number) {
    const from = Math.round(fromRate);
    const to = Math.round(toRate);
    if (!(from > 0) || !(to > 0)) throw new RangeError("Resampler: rates must be positive numbers");
    let a = from;
    let b = to;
    while (b) [a, b] = [b, a % b];
    this.#num = from / a; // input samples per output sample is #num / #den
    this.#den = to / a;
  }

  /** Resample the next block of the stream. */
  process(input: Float32Array): Float32Array {
    const num = this.#num;
    const den = this.#den;
    if (num === den) return input.slice();
    const buf = new Float32Array(this.#rest.length + input.length);
    buf.set(this.#rest);
    buf.set(input, this.#rest.length);
    const out: number[] = [];
    let pos = this.#pos;
    if (num > den) {
      // Each output sample is the mean of the input samples it covers.
      for (;;) {
        const from = Math.floor(pos / den);
        const to = Math.floor((pos + num) / den);
        if (to > buf.length) break;
        let sum = 0;
        for (let i = from; i < to; i += 1) sum += buf[i] ?? 0;
        out.push(to > from ? sum / (to - from) : (buf[from] ?? 0));
        pos += num;
      }
    } else {
      for (;;) {
        const i = Math.floor(pos / den);
        if (i + 1 >= buf.length) break;
        const a = buf[i] ?? 0;
        out.push(a + ((buf[i + 1] ?? 0) - a) * ((pos - i * den) / den));
        pos += num;
      }
    }
    const used = Math.min(Math.floor(pos / den), buf.length);
    this.#rest = buf.slice(used);
    this.#pos = pos - used * den;
    return Float32Array.from(out);
  }
}

/** Resample one block on its own (a stream: use a `Resampler`, which joins blocks). */
export function resample(input: Float32Array, fromRate: number, toRate: number): Float32Array {
  return new Resampler(fromRate, toRate).process(input);
}

/** Options of a `PcmEncoder`. */
export interface PcmEncoderOptions {
  /** The sample rate of the float samples pushed in (an AudioContext's), in Hz. */
  inputRate: number;
  /** The chunks' sample rate (default 16 000 Hz, what the Live API takes). */
  outputRate?: number;
  /** The length of one chunk, in milliseconds (default 40). */
  chunkMs?: number;
}

/**
 * Float samples in, Live API audio chunks out: resampled, 16-bit little-endian PCM, in
 * chunks of `chunkMs`, as `{data: base64, mimeType: "audio/pcm;rate=16000"}`.
 */
export class PcmEncoder {
  readonly #resampler: Resampler;
  readonly #mimeType: string;
  readonly #chunk: Int16Array;
  #filled = 0;

  constructor(options: PcmEncoderOptions) {
    const outputRate = options.outputRate ?? 16_000;
    const chunkMs = options.chunkMs ?? 40;
    if (!(chunkMs > 0)) throw new RangeError("PcmEncoder: chunkMs must be a positive number");
    this.#resampler = new Resampler(options.inputRate, outputRate);
    this.#mimeType = `audio/pcm;rate=${outputRate}`;
    this.#chunk = new Int16Array(Math.max(1, Math.round((outputRate * chunkMs) / 1000)));
  }

  /** Encode the next block of float samples; returns the chunks it completed (maybe none). */
  push(samples: Float32Array): GenAIBlob[] {
    const pcm = floatTo16BitPCM(this.#resampler.process(samples));
    const chunks: GenAIBlob[] = [];
    let offset = 0;
    while (offset < pcm.length) {
      const take = Math.min(pcm.length - offset, this.#chunk.length - this.#filled);
      this.#chunk.set(pcm.subarray(offset, offset + take), this.#filled);
      this.#filled += take;
      offset += take;
      if (this.#filled === this.#chunk.length) {
        chunks.push(this.#blob(this.#chunk));
        this.#filled = 0;
      }
    }
    return chunks;
  }

  /** The samples of an unfinished chunk as a shorter chunk, or null when there are none. */
  flush(): GenAIBlob | null {
    if (this.#filled === 0) return null;
    const blob = this.#blob(this.#chunk.subarray(0, this.#filled));
    this.#filled = 0;
    return blob;
  }

  #blob(samples: Int16Array): GenAIBlob {
    return { data: bytesToBase64(int16ToBytes(samples)), mimeType: this.#mimeType };
  }
}
