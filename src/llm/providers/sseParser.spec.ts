// SSEParser: the events of a stream whatever way its bytes are cut into reads.
import { describe, expect, it } from 'vitest';
import { SSEParser, type SSEMessage } from './sseParser.js';

const encoder = new TextEncoder();

/** Parses `text` fed in reads cut at `cuts` (byte offsets). */
function parse(text: string, cuts: number[] = []): SSEMessage[] {
  const bytes = encoder.encode(text);
  const parser = new SSEParser();
  const out: SSEMessage[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...parser.push(bytes.subarray(from, cut)));
    from = cut;
  }
  out.push(...parser.end());
  return out;
}

const STREAM = [
  ': a comment\n\n',
  'data: {"a":1}\n\n',
  'event: update\ndata: line one\ndata: line two\n\n',
  'data:no-space\n\n',
  'id: 7\nretry: 100\n\n', // no data: skipped
  'data: {"text":"ünï 😀 \\" \\n"}\n\n\n',
  'data: [DONE]\n\n',
].join('');
const EXPECTED: SSEMessage[] = [
  { event: undefined, data: '{"a":1}' },
  { event: 'update', data: 'line one\nline two' },
  { event: undefined, data: 'no-space' },
  { event: undefined, data: '{"text":"ünï 😀 \\" \\n"}' },
  { event: undefined, data: '[DONE]' },
];

describe('SSEParser', () => {
  it('parses events, multi-line data, event names and comments', () => {
    expect(parse(STREAM)).toEqual(EXPECTED);
  });

  it('gives the same events whatever byte each read ends at (multi-byte characters split too)', () => {
    const length = encoder.encode(STREAM).length;
    for (let cut = 1; cut < length; cut++) expect(parse(STREAM, [cut])).toEqual(EXPECTED);
    const everyByte = Array.from({ length: length - 1 }, (_, i) => i + 1);
    expect(parse(STREAM, everyByte)).toEqual(EXPECTED);
  });

  it('accepts \\r\\n and \\r line ends, also when a \\r\\n is split across reads', () => {
    const crlf = STREAM.replace(/\n/g, '\r\n');
    const length = encoder.encode(crlf).length;
    for (let cut = 1; cut < length; cut++) expect(parse(crlf, [cut])).toEqual(EXPECTED);
    expect(parse(STREAM.replace(/\n/g, '\r'))).toEqual(EXPECTED);
  });

  it('gives a last event that has no blank line after it when the stream ends', () => {
    expect(parse('data: 1\n\ndata: 2')).toEqual([
      { event: undefined, data: '1' },
      { event: undefined, data: '2' },
    ]);
  });
});
