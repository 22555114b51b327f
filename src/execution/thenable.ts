// One test for "a promise-like value" on both sides of the worker boundary (no imports: the worker
// entries stay light).

/** A value with a callable `then`: a promise, or any thenable object or function. */
export const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null &&
  (typeof value === 'object' || typeof value === 'function') &&
  typeof (value as PromiseLike<unknown>).then === 'function';
