// Model classes for worker mechanisms live in a module of their own, written in JavaScript (or
// built from TypeScript): worker threads and child processes import it by path, so it must load
// without a TypeScript loader, and it must not rely on anything set up in the main thread.
import { Model } from 'rxserve';

/** Scores a text with some real arithmetic (~`work` ms), deterministic for a given text. */
export class Scorer extends Model {
  async load() {
    // A real model would read its weights here; this runs once per thread or process.
    this.weights = Array.from({ length: 64 }, (_, i) => Math.sin(i + (this.params.seed ?? 0)));
  }

  predict(body) {
    const until = performance.now() + (this.params.work ?? 5);
    let spin = 0;
    while (performance.now() < until) spin++;
    let score = 0;
    for (let i = 0; i < body.text.length; i++) score += this.weights[body.text.charCodeAt(i) % 64];
    return { score: Math.round(score * 1000) / 1000, pid: process.pid, busy: spin > 0 };
  }
}

/** Exits its process (or thread) on request, to show crash isolation. */
export class Fragile extends Model {
  predict(body) {
    if (body.text === 'crash') process.exit(1);
    return { length: body.text.length };
  }
}
