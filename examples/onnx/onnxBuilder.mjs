// A tiny hand-written ONNX (protobuf) encoder: enough to write a multi-layer perceptron with a
// dynamic batch dimension (MatMul, Add, Relu; opset 13). The example and the benchmark build
// their model with it, so no binary model is shipped.
import { writeFileSync } from 'node:fs';

const varint = (n) => {
  const out = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
};
const key = (field, wire) => varint((field << 3) | wire);
const int = (field, n) => [...key(field, 0), ...varint(n)];
const bytes = (field, data) => [...key(field, 2), ...varint(data.length), ...data];
const str = (field, s) => bytes(field, [...Buffer.from(s, 'utf8')]);
const msg = (field, parts) => bytes(field, parts.flat());

const FLOAT = 1;
const dim = (d) => msg(1, [typeof d === 'number' ? int(1, d) : str(2, d)]);
const valueInfo = (field, name, shape) => msg(field, [str(1, name), msg(2, [msg(1, [int(1, FLOAT), msg(2, shape.map(dim))])])]);
const tensor = (name, dims, values) =>
  msg(5, [...dims.map((d) => int(1, d)), int(2, FLOAT), str(8, name), bytes(9, [...Buffer.from(new Float32Array(values).buffer)])]);
const node = (op, inputs, outputs) => msg(1, [...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(4, op)]);

/** A deterministic pseudo-random generator, so every build gives the same weights. */
function weights(seed, count, scale) {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 0xffffffff) * 2 - 1) * scale;
  });
}

/**
 * The bytes of an ONNX model: `layers` dense layers (`widths[i] → widths[i+1]`), ReLU between
 * them; input 'x' [batch, widths[0]] FP32, output 'y' [batch, widths.at(-1)], batch symbolic.
 */
export function mlpModel(widths) {
  const nodes = [];
  const inits = [];
  let last = 'x';
  for (let i = 0; i + 1 < widths.length; i++) {
    const [n, m] = [widths[i], widths[i + 1]];
    inits.push(tensor(`w${i}`, [n, m], weights(7 + i, n * m, 1 / Math.sqrt(n))), tensor(`b${i}`, [m], weights(101 + i, m, 0.1)));
    const out = i + 2 === widths.length ? 'y' : `h${i}`;
    nodes.push(node('MatMul', [last, `w${i}`], [`mm${i}`]));
    nodes.push(node('Add', [`mm${i}`, `b${i}`], [i + 2 === widths.length ? out : `a${i}`]));
    if (i + 2 < widths.length) nodes.push(node('Relu', [`a${i}`], [out]));
    last = out;
  }
  const graph = [...nodes, str(2, 'mlp'), ...inits, valueInfo(11, 'x', ['batch', widths[0]]), valueInfo(12, 'y', ['batch', widths.at(-1)])];
  return Uint8Array.from([...int(1, 8), ...str(2, 'rxserve onnxBuilder'), ...msg(7, graph), ...msg(8, [str(1, ''), int(2, 13)])]);
}

/** Writes an MLP model to `path` and returns the path. */
export function writeMlpModel(path, widths) {
  writeFileSync(path, mlpModel(widths));
  return path;
}
