// gemini-tokens/audio: the pure PCM helpers, and Microphone and Player on fake Web Audio
// objects (Node has no AudioContext; tests/test_browser.py drives the real one later).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Microphone,
  PcmEncoder,
  Player,
  Resampler,
  base64ToBytes,
  bytesToBase64,
  floatTo16BitPCM,
  int16ToBytes,
  pcm16ToFloat32,
  resample,
} from "../../dist/audio.js";

test("floatTo16BitPCM: full scale both ways, clamped beyond", () => {
  const out = floatTo16BitPCM(Float32Array.from([0, 1, -1, 0.5, -0.5, 2, -2]));
  assert.deepEqual([...out], [0, 32767, -32768, 16383, -16384, 32767, -32768]);
});

test("int16ToBytes is little-endian; pcm16ToFloat32 reads it back", () => {
  const bytes = int16ToBytes(Int16Array.from([1, -2, 0x1234]));
  assert.deepEqual([...bytes], [0x01, 0x00, 0xfe, 0xff, 0x34, 0x12]);
  const back = pcm16ToFloat32(bytes);
  assert.deepEqual([...back], [1 / 32768, -2 / 32768, 0x1234 / 32768]);
  assert.equal(pcm16ToFloat32(Uint8Array.from([1, 0, 7])).length, 1); // an odd byte is dropped
});

test("pcm16ToFloat32 reads a view into a larger buffer at its offset", () => {
  const whole = Uint8Array.from([9, 9, 0x00, 0x40, 9]);
  assert.deepEqual([...pcm16ToFloat32(whole.subarray(2, 4))], [0.5]);
});

test("base64 both ways, large inputs included", () => {
  assert.equal(bytesToBase64(Uint8Array.from([0, 1, 2, 253, 254, 255])), "AAEC/f7/");
  assert.deepEqual([...base64ToBytes("AAEC/f7/")], [0, 1, 2, 253, 254, 255]);
  const big = new Uint8Array(200_000).map((_, i) => i % 251);
  assert.equal(bytesToBase64(big), Buffer.from(big).toString("base64"));
  assert.deepEqual(base64ToBytes(Buffer.from(big).toString("base64")), big);
});

test("resample 48 kHz -> 16 kHz averages each three samples", () => {
  const input = Float32Array.from([0, 0.3, 0.6, 0.9, 0.9, 0.9]);
  const out = resample(input, 48_000, 16_000);
  assert.equal(out.length, 2);
  assert.ok(Math.abs(out[0] - 0.3) < 1e-6);
  assert.ok(Math.abs(out[1] - 0.9) < 1e-6);
});

test("a streaming Resampler gives as many samples in blocks as at once, and the same ones", () => {
  const tone = new Float32Array(44_100).map((_, i) => Math.sin((2 * Math.PI * 440 * i) / 44_100));
  const whole = resample(tone, 44_100, 16_000);
  const stream = new Resampler(44_100, 16_000);
  const parts = [];
  for (let i = 0; i < tone.length; i += 128) parts.push(...stream.process(tone.subarray(i, i + 128)));
  assert.ok(Math.abs(whole.length - 16_000) <= 1, `${whole.length} samples`);
  assert.equal(parts.length, whole.length);
  for (let i = 0; i < whole.length; i += 1) assert.ok(Math.abs(parts[i] - whole[i]) < 1e-5, `sample ${i}`);
});

test("up-sampling interpolates linearly; the same rate is a copy", () => {
  const out = resample(Float32Array.from([0, 1, 0]), 8_000, 16_000);
  assert.deepEqual([...out].map((v) => Math.round(v * 100) / 100), [0, 0.5, 1, 0.5]);
  const same = Float32Array.from([0.1, 0.2]);
  const copy = resample(same, 16_000, 16_000);
  assert.deepEqual(copy, same);
  assert.notEqual(copy, same);
  assert.throws(() => new Resampler(0, 16_000), /rates must be positive/);
});

test("PcmEncoder: 16 kHz chunks of chunkMs, base64 little-endian PCM, the tail on flush()", () => {
  const encoder = new PcmEncoder({ inputRate: 48_000, chunkMs: 20 }); // 320 samples a chunk
  const second = new Float32Array(48_000).fill(0.5);
  const chunks = [];
  for (let i = 0; i < 48_100; i += 512) chunks.push(...encoder.push(second.subarray(i, i + 512)));
  assert.equal(chunks.length, 50);
  for (const chunk of chunks) {
    assert.equal(chunk.mimeType, "audio/pcm;rate=16000");
    const samples = new Int16Array(base64ToBytes(chunk.data).buffer);
    assert.equal(samples.length, 320);
    assert.ok(samples.every((s) => s === 16383));
  }
  assert.equal(encoder.flush(), null);
  encoder.push(new Float32Array(30).fill(-1)); // 10 samples at 16 kHz
  const tail = encoder.flush();
  assert.equal(base64ToBytes(tail.data).length, 20);
  assert.equal(encoder.flush(), null);
});

// ---------------------------------------------------------------- fake Web Audio

function fakeAudio({ sampleRate = 48_000 } = {}) {
  const world = { modules: [], nodes: [], tracksStopped: 0, closed: false, started: [], stopped: 0 };
  class FakePort {
    onmessage = null;
  }
  class FakeNode {
    connected = [];
    connect(to) {
      this.connected.push(to);
    }
    disconnect() {
      this.connected = [];
    }
  }
  class FakeWorkletNode extends FakeNode {
    constructor(context, name, options) {
      super();
      this.name = name;
      this.options = options;
      this.port = new FakePort();
      world.nodes.push(this);
    }
  }
  const context = {
    sampleRate,
    state: "running",
    currentTime: 0,
    destination: new FakeNode(),
    audioWorklet: {
      addModule: async (url) => {
        world.modules.push(url);
      },
    },
    createMediaStreamSource: () => new FakeNode(),
    createBuffer: (channels, length, rate) => {
      const data = new Float32Array(length);
      return { duration: length / rate, length, sampleRate: rate, getChannelData: () => data };
    },
    createBufferSource: () => {
      const node = new FakeNode();
      node.start = (when) => world.started.push({ when, duration: node.buffer.duration });
      node.stop = () => {
        world.stopped += 1;
      };
      return node;
    },
    close: async () => {
      world.closed = true;
    },
    resume: async () => {},
  };
  const track = {
    stop: () => {
      world.tracksStopped += 1;
    },
    addEventListener: () => {},
  };
  const stream = { getTracks: () => [track], getAudioTracks: () => [track] };
  const mediaDevices = {
    getUserMedia: async (constraints) => {
      world.constraints = constraints;
      return stream;
    },
  };
  return { world, context, mediaDevices, FakeWorkletNode };
}

test("Microphone.start: getUserMedia, the worklet, chunks straight into live.sendRealtimeInput", async () => {
  const { world, context, mediaDevices, FakeWorkletNode } = fakeAudio();
  globalThis.AudioWorkletNode = FakeWorkletNode;
  try {
    const sent = [];
    const seen = [];
    const live = { sendRealtimeInput: (params) => sent.push(params) };
    const mic = await Microphone.start({
      live,
      onchunk: (c) => seen.push(c),
      deviceId: "mic-2",
      chunkMs: 40,
      audioContext: context,
      mediaDevices,
    });
    assert.deepEqual(world.constraints.audio.deviceId, { exact: "mic-2" });
    assert.equal(world.constraints.audio.echoCancellation, true);
    assert.equal(world.modules.length, 1);
    assert.match(world.modules[0], /^blob:/);
    const [node] = world.nodes;
    assert.equal(node.name, "gemini-tokens-capture");
    assert.equal(node.options.numberOfOutputs, 0);
    // 100 ms at 48 kHz in worklet frames of 512: two 40 ms chunks, 20 ms left for stop().
    const frame = new Float32Array(512).fill(0.25);
    for (let i = 0; i < 4800; i += 512) node.port.onmessage({ data: frame.subarray(0, Math.min(512, 4800 - i)) });
    assert.equal(sent.length, 2);
    assert.deepEqual(sent[0], { audio: seen[0] });
    assert.equal(sent[0].audio.mimeType, "audio/pcm;rate=16000");
    assert.equal(base64ToBytes(sent[0].audio.data).length, 1280);
    mic.stop();
    mic.stop();
    assert.equal(sent.length, 3); // the tail
    assert.equal(base64ToBytes(sent[2].audio.data).length, 640);
    assert.equal(mic.active, false);
    assert.equal(world.tracksStopped, 1);
    assert.equal(world.closed, false, "a shared AudioContext stays open");
    node.port.onmessage?.({ data: frame });
    assert.equal(sent.length, 3);
    // A second microphone on the same context does not load the worklet again.
    (await Microphone.start({ onchunk: () => {}, audioContext: context, mediaDevices })).stop();
    assert.equal(world.modules.length, 1);
  } finally {
    delete globalThis.AudioWorkletNode;
  }
});

test("Microphone: a session that has ended stops it, once, telling onerror", async () => {
  const { world, context, mediaDevices, FakeWorkletNode } = fakeAudio();
  globalThis.AudioWorkletNode = FakeWorkletNode;
  try {
    const errors = [];
    const live = {
      sendRealtimeInput: () => {
        throw new Error("the live session is closed");
      },
    };
    const mic = await Microphone.start({ live, onerror: (e) => errors.push(e.message), chunkMs: 10, audioContext: context, mediaDevices });
    world.nodes[0].port.onmessage({ data: new Float32Array(4800) });
    assert.equal(mic.active, false);
    assert.deepEqual(errors, ["the live session is closed"]);
    assert.equal(world.tracksStopped, 1);
  } finally {
    delete globalThis.AudioWorkletNode;
  }
});

test("Microphone.start without getUserMedia says why", async () => {
  await assert.rejects(Microphone.start({ mediaDevices: {} }), /getUserMedia is not available/);
  await assert.rejects(Microphone.start({ chunkMs: 0 }), /chunkMs must be a positive number/);
});

function pcmChunk(samples, rate = 24_000) {
  return { data: bytesToBase64(int16ToBytes(new Int16Array(samples))), mimeType: `audio/pcm;rate=${rate}` };
}

test("Player schedules chunks back to back on one timeline, decoding 24 kHz PCM", () => {
  const { world, context } = fakeAudio();
  context.currentTime = 1;
  const player = new Player({ audioContext: context });
  player.play(pcmChunk(2400)); // 100 ms
  player.play(pcmChunk(4800)); // 200 ms
  context.currentTime = 1.05; // the clock moves on while the first one plays
  player.play(pcmChunk(1200, 24_000));
  assert.deepEqual(
    world.started.map((s) => [Math.round(s.when * 1000), Math.round(s.duration * 1000)]),
    [
      [1000, 100],
      [1100, 200],
      [1300, 50],
    ],
  );
  assert.equal(player.playing, true);
  player.play(undefined); // a part without audio
  player.play({ mimeType: "audio/pcm;rate=24000" });
  assert.equal(world.started.length, 3);
  assert.throws(() => player.play({ data: "AAAA", mimeType: "audio/mp3" }), /only 16-bit PCM/);
});

test("Player.interrupt stops what is scheduled; the next chunk starts now", () => {
  const { world, context } = fakeAudio();
  const player = new Player({ audioContext: context });
  player.play(pcmChunk(24_000));
  player.play(pcmChunk(24_000));
  player.interrupt();
  assert.equal(world.stopped, 2);
  assert.equal(player.playing, false);
  context.currentTime = 0.5;
  player.play(pcmChunk(2400));
  assert.equal(world.started.at(-1).when, 0.5);
});

test("a chunk's decoded samples are the PCM sent, at the rate its mimeType names", () => {
  const { context } = fakeAudio();
  const buffers = [];
  const create = context.createBuffer;
  context.createBuffer = (...args) => {
    const buffer = create(...args);
    buffers.push(buffer);
    return buffer;
  };
  const player = new Player({ audioContext: context, sampleRate: 22_050 });
  player.play({ data: bytesToBase64(int16ToBytes(Int16Array.from([16384, -16384]))), mimeType: "audio/pcm;rate=16000" });
  player.play({ data: bytesToBase64(int16ToBytes(Int16Array.from([0]))) });
  assert.deepEqual([...buffers[0].getChannelData(0)], [0.5, -0.5]);
  assert.equal(buffers[0].sampleRate, 16_000);
  assert.equal(buffers[1].sampleRate, 22_050);
});

test("Player.close closes the context it made, not a shared one; play() after close is refused", async () => {
  const { world, context } = fakeAudio();
  const shared = new Player({ audioContext: context });
  shared.play(pcmChunk(100));
  await shared.close();
  assert.equal(world.closed, false);
  assert.throws(() => shared.play(pcmChunk(100)), /after close/);
});
