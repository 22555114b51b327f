import { describe, expect, it } from 'vitest';

describe('the one list of error classes', () => {
  it('lists every error class errors.ts exports, and a worker rebuilds each with its class', async () => {
    const errors = await import('./errors.js');
    const { deserializeError, serializeError } = await import('./execution/wire/protocol.js');
    const classes = Object.entries(errors).filter(
      ([, value]) => typeof value === 'function' && (value as { prototype?: unknown }).prototype instanceof Error,
    );
    expect(classes.length).toBeGreaterThan(5);
    for (const [name, cls] of classes) {
      expect(errors.ERROR_CLASSES[name], name).toBe(cls);
      const instance = Object.create((cls as { prototype: object }).prototype) as Error;
      Object.defineProperty(instance, 'name', { value: name });
      Object.defineProperty(instance, 'message', { value: 'm' });
      expect(deserializeError(serializeError(instance))).toBeInstanceOf(cls as never);
    }
  });
});
