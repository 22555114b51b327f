// bodyProblem: the edges' one check of a request body's depth and prototype-poisoning keys.
import { describe, expect, it } from 'vitest';
import { bodyProblem, isDepthProblem, jsonTextProblem } from './body.js';

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

  it('gives the same verdict on either side of the limits of the quick walk (32 levels, 512 objects)', () => {
    for (const maxDepth of [31, 32, 33, 40]) {
      expect(bodyProblem(nest(maxDepth), { maxDepth })).toBeUndefined();
      expect(bodyProblem(nest(maxDepth + 1), { maxDepth })).toMatch(
        new RegExp(`^body is nested deeper than ${maxDepth} levels \\(at body`),
      );
    }
    // Many small objects (past the quick walk's budget), and one too deep at the very end.
    const wide = Array.from({ length: 2_000 }, (_, i) => ({ i, tags: ['a'] }));
    expect(bodyProblem(wide)).toBeUndefined();
    expect(bodyProblem([...wide, nest(6)], { maxDepth: 6 })).toBe('body is nested deeper than 6 levels (at body[2000][0].a[0].a[0])');
    // A subtree shared by many parents: 2^40 paths, settled at once (the full walk visits each object once).
    let dag: unknown = { leaf: true };
    for (let i = 0; i < 40; i++) dag = [dag, dag];
    expect(bodyProblem(dag)).toBeUndefined();
    expect(bodyProblem(dag, { maxDepth: 40 })).toMatch(/^body is nested deeper than 40 levels/);
    // Inherited enumerable keys are not the body's (as Object.keys): not walked.
    const inherited = Object.create({ deep: nest(10) }) as Record<string, unknown>;
    inherited.own = 1;
    expect(bodyProblem(inherited, { maxDepth: 2 })).toBeUndefined();
  });

  it('with protoKeys, refuses __proto__ and constructor.prototype keys at any depth (as JSON.parse makes them)', () => {
    const proto: unknown = JSON.parse('{"list":[{"ok":1},{"__proto__":{"polluted":true}}]}');
    expect(bodyProblem(proto, { protoKeys: true })).toBe("body has a '__proto__' key (at body.list[1].__proto__)");
    expect(bodyProblem(proto)).toBeUndefined();
    const ctor: unknown = JSON.parse('{"a":{"constructor":{"prototype":{"x":1}}}}');
    expect(bodyProblem(ctor, { protoKeys: true })).toBe("body has a 'constructor.prototype' key (at body.a.constructor.prototype)");
    expect(bodyProblem({ constructor: 'a string is fine' }, { protoKeys: true })).toBeUndefined();
  });

  it('with protoKeys, the quick walk hands bodies with such key names to the full walk, which judges them', () => {
    // A 'constructor' key is harmless without a 'prototype' under it: the full walk says so.
    expect(bodyProblem({ a: [{ constructor: { name: 'x' } }] }, { protoKeys: true })).toBeUndefined();
    expect(bodyProblem(JSON.parse('{"a":[{"__proto__":1}]}'), { protoKeys: true })).toBe(
      "body has a '__proto__' key (at body.a[0].__proto__)",
    );
  });
});

describe('jsonTextProblem', () => {
  const check = (text: string, maxDepth?: number) => jsonTextProblem(text, JSON.parse(text), maxDepth);

  it('gives the verdict of the walk: depth at and past the limit, whatever the text length', () => {
    // '[[[[]]]]' (8 characters) is depth 4: the shortest text of that depth, so it is walked.
    expect(check('[[[[]]]]', 3)).toBe('body is nested deeper than 3 levels (at body[0][0][0])');
    expect(check('[[[1]]]', 3)).toBeUndefined();
    expect(check(JSON.stringify(nest(257)))).toMatch(/^body is nested deeper than 256 levels/);
    expect(check(JSON.stringify(nest(256)))).toBeUndefined();
    expect(isDepthProblem(check('[[[[]]]]', 3)!)).toBe(true);
  });

  it('refuses prototype-poisoning keys in short texts, escaped ones included; lets look-alikes through', () => {
    expect(check('{"__proto__":{}}')).toBe("body has a '__proto__' key (at body.__proto__)");
    expect(check('{"a":{"\\u005f_proto__":1}}')).toBe("body has a '__proto__' key (at body.a.__proto__)");
    expect(check('{"c\\u006fnstructor":{"prototype":{}}}')).toBe("body has a 'constructor.prototype' key (at body.constructor.prototype)");
    expect(isDepthProblem(check('{"__proto__":{}}')!)).toBe(false);
    expect(check('{"constructor":"x","__proto__x":1,"t":"\\n"}')).toBeUndefined();
    expect(check('"__proto__"')).toBeUndefined();
  });

  it('on a long text naming no such key, walks for depth only (a long array of objects passes)', () => {
    const wide = Array.from({ length: 1_000 }, (_, i) => ({ i, tags: ['a'] }));
    expect(check(JSON.stringify(wide))).toBeUndefined();
    expect(check(JSON.stringify([...wide, nest(7)]), 6)).toBe('body is nested deeper than 6 levels (at body[1000].a[0].a[0].a)');
  });
});
