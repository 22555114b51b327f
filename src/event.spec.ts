import { describe, expect, it } from 'vitest';
import { lastValueFrom, of, toArray } from 'rxjs';
import { asEvents, getPath, hasPath, setPath, toEvent, withBody, withError } from './index.js';
import { cloneBody } from './execution/clone.js';
import { CANCEL, EventCancel, makeEvent, type ServingEvent } from './event.js';

describe('events', () => {
  it('toEvent makes a frozen event with a generated id and empty metadata', () => {
    const a = toEvent({ x: 1 });
    const b = toEvent({ x: 1 });
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.id).not.toBe(b.id);
    expect(a.metadata).toEqual({});
    expect(Object.isFrozen(a)).toBe(true);
    expect(() => {
      (a as { body: unknown }).body = 2;
    }).toThrow(TypeError);
    expect(toEvent(1, { id: 'k', path: '/p', headers: { h: 'v' }, metadata: { m: 1 } })).toEqual({
      id: 'k',
      body: 1,
      path: '/p',
      headers: { h: 'v' },
      metadata: { m: 1 },
    });
  });

  it('asEvents wraps plain values and keeps events as they are', async () => {
    const existing = toEvent('e');
    const out = await lastValueFrom(of(1 as unknown, existing).pipe(asEvents(), toArray()));
    expect(out[0].body).toBe(1);
    expect(out[1]).toBe(existing);
  });

  it('EventCancel: a listener (object or function) removed, last or in the middle, is not called; the others are, once', () => {
    const cancel = new EventCancel();
    const calls: string[] = [];
    const listeners = ['a', 'b', 'c', 'd'].map((name) => ({ handleEvent: () => void calls.push(name) }));
    for (const listener of listeners) cancel.listen(listener);
    const fn = () => void calls.push('fn'); // undici and sleep add functions
    cancel.addEventListener('abort', fn);
    cancel.unlisten(listeners[3]); // not the last one: fn is
    cancel.removeEventListener('abort', fn); // the last one
    cancel.unlisten(listeners[1]); // one in the middle
    cancel.unlisten(listeners[1]); // twice: nothing more
    cancel.addEventListener('abort', fn);
    cancel.abort('why');
    cancel.abort('again');
    expect(calls).toEqual(['a', 'c', 'fn']);
    expect(cancel.reason).toBe('why');
  });

  it('withBody copies every field, CANCEL included, in the same key order as a spread; extra fields of events made elsewhere are kept', () => {
    const cancel = new EventCancel();
    const partials = () => undefined;
    const full = makeEvent(
      { a: 1 },
      {
        id: 'f',
        path: '/p',
        headers: { h: 'v' },
        method: 'POST',
        metadata: { m: 1 },
        origin: 'o',
        signal: new AbortController().signal,
        partials,
      },
      cancel,
    );
    const spread = (e: ServingEvent, body: unknown) => ({ ...e, body });
    const keys = (e: object) => Reflect.ownKeys(e);
    for (const event of [full, toEvent(2), toEvent(3, { id: 'k', headers: { h: 'v' } })]) {
      const out = withBody(event, { b: 2 });
      expect(out).toStrictEqual(spread(event, { b: 2 }));
      expect(keys(out)).toEqual(keys(event));
      expect(Object.isFrozen(out)).toBe(true);
      // A copy of a copy too.
      expect(keys(withBody(out, 4))).toEqual(keys(event));
    }
    expect((withBody(full, 0) as { [CANCEL]?: unknown })[CANCEL]).toBe(cancel);
    // Fields withBody does not know, on events made by hand or spread from one of ours, survive.
    const extra = Object.freeze({ ...full, extra: 'kept', [Symbol.for('user.mark')]: 1 });
    const out = withBody(extra, 5);
    expect((out as unknown as { extra: string }).extra).toBe('kept');
    expect(keys(out)).toEqual(keys(extra));
    const hand = { id: 'h', body: 1, metadata: {}, trace: 't' } as ServingEvent;
    expect(withBody(hand, 2)).toStrictEqual({ id: 'h', body: 2, metadata: {}, trace: 't' });
  });

  it('withBody / withError return new events and leave the original unchanged', () => {
    const e = toEvent({ a: 1 }, { id: 'x' });
    const changed = withBody(e, { a: 2 });
    const failed = withError(e, new Error('no'), 'step1');
    expect(e.body).toEqual({ a: 1 });
    expect(changed).toEqual({ id: 'x', body: { a: 2 }, metadata: {} });
    expect([failed.error?.message, failed.origin, failed.body]).toEqual(['no', 'step1', { a: 1 }]);
  });

  it('dot paths read, test and write (copying only the path) as MLRun does', () => {
    const body = { a: { b: { c: 1 } }, other: { keep: true } };
    expect(getPath(body, 'a.b.c')).toBe(1);
    expect(getPath(body, 'a.x.c')).toBeUndefined();
    expect(getPath(body, undefined)).toBe(body);
    expect(hasPath(body, 'a.b')).toBe(true);
    expect(hasPath(body, 'a.z')).toBe(false);
    const written = setPath(body, 'a.b.d', 2);
    expect(written).toEqual({ a: { b: { c: 1, d: 2 } }, other: { keep: true } });
    expect(body.a.b).toEqual({ c: 1 });
    expect(written.other).toBe(body.other); // shared, not copied
    expect(setPath({ n: 1 }, 'n.m', 3)).toEqual({ n: { m: 3 } });
    expect(setPath(1, '', 'whole')).toBe('whole');
    expect(() => getPath(body, 'a..b')).toThrow(/invalid dot path 'a..b'/);
  });

  it('cloneBody deep-copies plain data, handles dates, typed arrays and cycles, refuses functions', () => {
    const src = { a: [1, { b: 2 }], d: new Date(0), t: new Float32Array([1, 2]) };
    const copy = cloneBody(src);
    expect(copy).toEqual(src);
    expect(copy.a[1]).not.toBe(src.a[1]);
    expect(copy.t).not.toBe(src.t);
    const cyclic: Record<string, unknown> = { name: 'c' };
    cyclic.self = cyclic;
    expect((cloneBody(cyclic) as { name: string }).name).toBe('c');
    expect(() => cloneBody({ f: () => 1 })).toThrow(
      'cannot copy the model input: input.f is a function, which structured clone cannot copy',
    );
  });

  it('cloneBody keeps shared references and cycles past its small table (16 pairs), in a copy started from inside another (a getter), and after a failed copy', () => {
    const shared = { s: 1 };
    const wide: Record<string, unknown> = { first: shared };
    for (let i = 0; i < 40; i++) wide[`k${i}`] = { i, shared };
    wide.last = shared;
    wide.self = wide;
    const copy = cloneBody(wide);
    expect(copy.first).not.toBe(shared);
    expect(copy.last).toBe(copy.first);
    expect((copy.k39 as { shared: unknown }).shared).toBe(copy.first);
    expect(copy.self).toBe(copy);
    // A getter that copies another body while the outer copy is under way: neither mixes up the other's references.
    const innerShared = { t: 2 };
    let inner: { a: unknown; b: unknown } | undefined;
    const outer = { x: shared, y: [shared] } as Record<string, unknown>;
    Object.defineProperty(outer, 'z', {
      enumerable: true,
      get: () => {
        inner = cloneBody({ a: innerShared, b: innerShared });
        return shared;
      },
    });
    const outerCopy = cloneBody(outer);
    expect(outerCopy.z).toBe(outerCopy.x);
    expect((outerCopy.y as unknown[])[0]).toBe(outerCopy.x);
    expect(inner!.a).toBe(inner!.b);
    expect(inner!.a).not.toBe(outerCopy.x);
    // A copy that failed midway leaves nothing behind for the next one.
    expect(() => cloneBody({ a: shared, b: [shared, () => 1] })).toThrow('input.b[1] is a function');
    const next = cloneBody({ a: shared, b: [shared] });
    expect(next.a).not.toBe(shared);
    expect(next.b[0]).toBe(next.a);
  });

  it('cloneBody copies bodies nested far past the call stack without recursion, keeping shared references and cycles', () => {
    const leaf = { shared: true, when: new Date(5) };
    let deep: Record<string, unknown> = { leaf, list: [leaf, 1, 'x'] };
    for (let i = 0; i < 20_000; i++) deep = { a: deep, i };
    deep.self = deep;
    const copy = cloneBody(deep);
    let node = copy;
    let depth = 0;
    while ('a' in node) {
      expect(node.i).toBe(19_999 - depth);
      node = node.a as Record<string, unknown>;
      depth++;
    }
    expect(depth).toBe(20_000);
    expect(copy.self).toBe(copy);
    expect(node.leaf).toEqual(leaf);
    expect(node.leaf).not.toBe(leaf);
    expect((node.list as unknown[])[0]).toBe(node.leaf);
    expect(() => cloneBody({ deep, f: [() => 1] })).toThrow('input.f[0] is a function');
  });
});
