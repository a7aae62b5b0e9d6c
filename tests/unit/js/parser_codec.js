// Test helper: encode/decode Socket.IO packets with the reference JS parsers.
// stdin: {"parser": "default"|"msgpack", "op": "encode"|"decode", "items": [...]}
// stdout: JSON list, one entry per item.
// Values use tags for what JSON cannot hold: {"$bin": b64} Buffer, {"$ab": b64} ArrayBuffer,
// {"$u8": b64} Uint8Array, {"$undefined": true}, {"$date": ms}, {"$num": "NaN"|"Infinity"|"-Infinity"|"-0"}.
"use strict";
const defaultParser = require("socket.io-parser");
const msgpackParser = require("socket.io-msgpack-parser");

function fromWire(v) {
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === "object") {
    if ("$bin" in v) return Buffer.from(v.$bin, "base64");
    if ("$ab" in v) {
      const b = Buffer.from(v.$ab, "base64");
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
    }
    if ("$u8" in v) return new Uint8Array(Buffer.from(v.$u8, "base64"));
    if ("$undefined" in v) return undefined;
    if ("$date" in v) return new Date(v.$date);
    if ("$num" in v) return Number(v.$num);
    const out = {};
    for (const k of Object.keys(v)) out[k] = fromWire(v[k]);
    return out;
  }
  return v;
}

function toWire(v) {
  if (v === undefined) return { $undefined: true };
  if (Buffer.isBuffer(v)) return { $bin: v.toString("base64") };
  if (v instanceof ArrayBuffer) return { $ab: Buffer.from(v).toString("base64") };
  if (v instanceof Date) return { $date: v.getTime() };
  if (typeof v === "number" && !Number.isFinite(v)) return { $num: String(v) };
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v)) out[k] = toWire(v[k]);
    return out;
  }
  return v;
}

// Build the packet object the way the socket.io 4.8 server does (key order matters to
// notepack): EVENT {type, data, id?, nsp}, ACK {id, type, data, nsp}, others {type, data?, nsp}.
function buildPacket(spec) {
  let p;
  if (spec.type === 3 && spec.id !== undefined) {
    p = { id: fromWire(spec.id), type: 3, data: fromWire(spec.data) };
  } else {
    p = { type: spec.type };
    if (spec.data !== undefined) p.data = fromWire(spec.data);
    if (spec.id !== undefined) p.id = fromWire(spec.id);
  }
  p.nsp = spec.nsp === undefined ? "/" : spec.nsp;
  return p;
}

function encodeParts(parts) {
  return parts.map((x) => (typeof x === "string" ? { s: x } : { b: Buffer.from(x).toString("base64") }));
}

function decodeWith(parser, parts) {
  const decoder = new parser.Decoder();
  const packets = [];
  decoder.on("decoded", (p) => packets.push(toWire(Object.assign({}, p))));
  try {
    for (const part of parts) {
      decoder.add("s" in part ? part.s : Buffer.from(part.b, "base64"));
    }
  } catch (e) {
    return { error: String(e.message) };
  }
  return { packets };
}

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const parser = input.parser === "msgpack" ? msgpackParser : defaultParser;
let out;
if (input.op === "encode") {
  const encoder = new parser.Encoder();
  out = input.items.map((spec) => encodeParts(encoder.encode(buildPacket(spec))));
} else {
  out = input.items.map((parts) => decodeWith(parser, parts));
}
process.stdout.write(JSON.stringify(out));
