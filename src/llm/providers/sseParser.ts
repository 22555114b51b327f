// Server-Sent Events parsing for a provider's streamed answer: bytes in, each event's data out.
// The openai client's own Stream parses the same wire through five async generators per event and
// copies its whole unread buffer at every event (a read holding n events costs n² bytes); on a
// streamed answer that parsing is most of the LLModel's CPU per token. This parser works on one
// network read at a time, synchronously.

/** One event of an event stream: its `event:` name (if any) and its data lines joined. */
export interface SSEMessage {
  readonly event: string | undefined;
  readonly data: string;
}

/**
 * Incremental SSE parser (the WHATWG event-stream format): `push(bytes)` returns the events
 * completed by those bytes, in order; `end()` the last one when the stream ends without a blank
 * line. Line ends `\n`, `\r\n` and `\r` are all accepted, also when split across reads; comments
 * (`:` lines) are skipped; an event without a `data:` line is skipped (there is nothing to parse).
 */
export class SSEParser {
  readonly #decoder = new TextDecoder();
  #buffer = '';
  /** The last read ended in `\r`: a `\n` starting the next one belongs to it. */
  #pendingCR = false;

  push(bytes: Uint8Array): SSEMessage[] {
    return this.#feed(this.#decoder.decode(bytes, { stream: true }));
  }

  end(): SSEMessage[] {
    const out = this.#feed(this.#decoder.decode());
    if (this.#buffer.length > 0) {
      const message = parseEvent(this.#buffer);
      this.#buffer = '';
      if (message !== undefined) out.push(message);
    }
    return out;
  }

  #feed(text: string): SSEMessage[] {
    if (this.#pendingCR && text.startsWith('\n')) text = text.slice(1);
    if (text.length > 0) this.#pendingCR = text.endsWith('\r');
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    let buffer = this.#buffer.length === 0 ? text : this.#buffer + text;
    const out: SSEMessage[] = [];
    let start = 0;
    let end: number;
    while ((end = buffer.indexOf('\n\n', start)) >= 0) {
      const message = parseEvent(buffer.slice(start, end));
      if (message !== undefined) out.push(message);
      start = end + 2;
    }
    buffer = start === 0 ? buffer : buffer.slice(start);
    // Blank lines between events (more than one) leave a leading '\n': not part of the next event.
    this.#buffer = buffer.startsWith('\n') ? buffer.replace(/^\n+/, '') : buffer;
    return out;
  }
}

/** One event's lines (no blank line inside) → its message, or undefined without data. */
function parseEvent(block: string): SSEMessage | undefined {
  // The common case: one `data: ...` line.
  if (block.startsWith('data: ') && !block.includes('\n')) return { event: undefined, data: block.slice(6) };
  let event: string | undefined;
  let data: string[] | undefined;
  for (const line of block.split('\n')) {
    if (line.length === 0 || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (data ??= []).push(value);
    else if (field === 'event') event = value;
  }
  return data === undefined ? undefined : { event, data: data.join('\n') };
}
