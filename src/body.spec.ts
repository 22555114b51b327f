// bodyProblem: the edges' one check of a request body's depth and prototype-poisoning keys.
import { describe, expect, it } from 'vitest';
import { bodyProblem } from './body.js';

const nest = (depth: number, leaf: unknown = 1): unknown => {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
};

describe('bodyProblem', () => {
  it('accepts primitives, flat and nested bodies up to maxDepth (a bare value is depth 0)', () => {
    expect(bodyProblem(42)).toBeUndefined();
    expect(bodyProblem(null)).toBeUndefined();
    expect(bodyProblem({ inputs: [{ data: new Array(10_000).fill(1.5) }] })).toBeUndefined();
    expect(bodyProblem(nest(256))).toBeUndefined();
    expect(bodyProblem(nest(3), { maxDepth: 3 })).toBeUndefined();
  });

  it('refuses deeper bodies, naming where (the path cut to about 200 characters), without recursion', () => {
    expect(bodyProblem(nest(4), { maxDepth: 3 })).toBe('body is nested deeper than 3 levels (at body[0].a[0])');
    const problem = bodyProblem(nest(200_000))!;
    expect(problem).toMatch(/^body is nested deeper than 256 levels \(at body\[0\]\.a\[0\]\.a/);
    expect(problem.length).toBeLessThan(300);
  });

  it('walks shared references and cycles once', () => {
    const shared = { x: 1 };
    const cyclic: Record<string, unknown> = { shared, again: shared };
    cyclic.self = cyclic;
    expect(bodyProblem(cyclic)).toBeUndefined();
  });

  it('with protoKeys, refuses __proto__ and constructor.prototype keys at any depth (as JSON.parse makes them)', () => {
    const proto: unknown = JSON.parse('{"list":[{"ok":1},{"__proto__":{"polluted":true}}]}');
    expect(bodyProblem(proto, { protoKeys: true })).toBe("body has a '__proto__' key (at body.list[1].__proto__)");
    expect(bodyProblem(proto)).toBeUndefined();
    const ctor: unknown = JSON.parse('{"a":{"constructor":{"prototype":{"x":1}}}}');
    expect(bodyProblem(ctor, { protoKeys: true })).toBe("body has a 'constructor.prototype' key (at body.a.constructor.prototype)");
    expect(bodyProblem({ constructor: 'a string is fine' }, { protoKeys: true })).toBeUndefined();
  });
});
