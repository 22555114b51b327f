// The spec form of remoteStep's and batchHttpRequests' expressions: templates like
// 'http://profiles/users/{body.user}', compiled once into the functions the operators take.
import { ConfigError } from '../errors.js';
import { getPath, type ServingEvent } from '../event.js';

// `{a.b.c}`: one placeholder; any other brace is literal text.
const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Where a template reads: the event's fields, and for batchHttpRequests the list item. */
const EVENT_ROOTS = ['body', 'path', 'id', 'headers', 'metadata', 'method'];

/** A template's value for one event (and item): what `{...}` names, or text with them filled in. */
export type TemplateFn = (event: ServingEvent, item?: unknown) => unknown;

/**
 * Compiles `template`. A template that is exactly one `{path}` gives that value itself; otherwise
 * each `{path}` is replaced by its value as text (objects as JSON), percent-encoded when
 * `encode` (a URL). A path naming nothing in an event fails that event (a `TypeError` naming the
 * template and `at`). Paths start with `body`, `path`, `id`, `headers`, `metadata` or `method`
 * (and `item` when `withItem`); anything else is a ConfigError at `at`.
 */
export function compileTemplate(template: string, at: string, options: { encode: boolean; withItem: boolean }): TemplateFn {
  const roots = options.withItem ? [...EVENT_ROOTS, 'item'] : EVENT_ROOTS;
  const paths = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
  for (const path of paths) {
    const segments = path.split('.');
    if (segments.some((s) => s.trim() === '' || s !== s.trim()) || !roots.includes(segments[0])) {
      throw new ConfigError([
        { path: at, expected: '', message: `'{${path}}' in template '${template}' is not a dot path starting with ${roots.join(', ')}` },
      ]);
    }
  }
  const read = (event: ServingEvent, item: unknown, path: string): unknown => {
    const value = path === 'item' ? item : path.startsWith('item.') ? getPath(item, path.slice(5)) : getPath(event, path);
    if (value === undefined) throw new TypeError(`template '${template}' (${at}): event '${event.id}' has no '${path}'`);
    return value;
  };
  const whole = paths.length === 1 && template === `{${paths[0]}}` ? paths[0] : undefined;
  if (whole !== undefined) return (event, item) => read(event, item, whole);
  const text = (value: unknown) => {
    const s = value !== null && typeof value === 'object' ? JSON.stringify(value) : String(value);
    return options.encode ? encodeURIComponent(s) : s;
  };
  return (event, item) => template.replace(PLACEHOLDER, (_, path: string) => text(read(event, item, path)));
}
