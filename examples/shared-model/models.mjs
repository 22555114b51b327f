// A model meant to be shared: loaded once (it is "big"), it serves every proxy, and answers with
// the prompt of the proxy that called (ctx.origin), as an LLModel would.
import { Model } from 'rxserve';

let loads = 0;

export class Assistant extends Model {
  async load() {
    loads++;
    await new Promise((r) => setTimeout(r, 50)); // pretend to read big weights
  }

  predict(body, ctx) {
    const prompt = this.params.proxyArtifacts?.[ctx.origin]?.promptTemplate?.[0]?.content ?? '{question}';
    return {
      answer: prompt.replace('{question}', body.question),
      servedBy: { pid: process.pid, loads, origin: ctx.origin },
    };
  }
}
