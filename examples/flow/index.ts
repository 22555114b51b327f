// A flow (docs/design.md §17): the LLM-as-judge loop. A writer LLM drafts an answer, a judge LLM reviews
// it, a choice sends a failed draft back round (at most 3 drafts per question), the reviewed
// draft is the response; an audit side branch records every draft after the answer has gone, and
// a fallback error handler answers with the last draft when the loop hits its bound or the judge
// talks nonsense. Served over HTTP; both LLMs are rxserve's loopback OpenAI-compatible server.
import { choice, createGraph, llmPromptArtifact, modelArtifact, serve, step } from 'rxserve';
import { startLLMServer } from 'rxserve/testing';

// How many drafts each question needs before the judge passes one (Infinity: never).
const NEEDS: Record<string, number> = { 'What is RxJS?': 1, 'Explain backpressure.': 2, 'Prove that P != NP.': Infinity };

// The loopback LLM: as writer it numbers its drafts; as judge it passes a draft once it is good
// enough for its question, and for a question about gibberish it answers gibberish.
const llm = await startLLMServer({
  answer: ({ messages }) => {
    const system = String(messages?.[0]?.content ?? '');
    const user = String(messages?.at(-1)?.content ?? '');
    if (system.includes('writer')) {
      const [, question, attempt] = /^(.*) \(draft (\d+)\)$/s.exec(user) ?? [];
      return `Draft ${attempt}: a short answer to "${question}".`;
    }
    const question = /^Question: (.*)\n/.exec(user)?.[1] ?? '';
    if (question.includes('gibberish')) return 'Blue, mostly. Perhaps.';
    const draft = Number(/Draft (\d+)/.exec(user)?.[1]);
    return draft >= (NEEDS[question] ?? 1) ? 'PASS' : 'FAIL: not detailed enough';
  },
});
const gpt = modelArtifact({
  key: 'gpt-4o-mini',
  modelUrl: 'openai://gpt-4o-mini',
  providerOptions: { apiKey: 'loopback', baseURL: llm.openaiBaseURL },
});
const writer = llmPromptArtifact({
  key: 'writer',
  model: gpt,
  promptTemplate: [
    { role: 'system', content: 'You are a careful writer. Answer in one sentence.' },
    { role: 'user', content: '{question} (draft {attempt})' },
  ],
});
const judge = llmPromptArtifact({
  key: 'judge',
  model: gpt,
  promptTemplate: [
    { role: 'system', content: 'You are a strict judge. Reply PASS, or FAIL with a reason.' },
    { role: 'user', content: 'Question: {question}\nAnswer: {draft}' },
  ],
});

interface Work {
  question: string;
  attempt?: number;
  draft?: string;
  written?: { answer: string };
  review?: { answer: string };
  verdict?: 'pass' | 'fail';
}

const graph = createGraph({ name: 'judge-loop' });
const audit: string[] = [];
const f = graph.flow({ name: 'answer' });
f.to(
  'count',
  step((b: Work) => ({ question: b.question, attempt: (b.attempt ?? 0) + 1 })),
  { maxIterations: 3 },
)
  .to(
    'generate',
    graph.modelRunner({
      name: 'generate',
      models: [
        { endpointName: 'writer', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: writer, resultPath: 'written' },
      ],
    }),
  )
  .to(
    'keep',
    step((b: Work) => ({ question: b.question, attempt: b.attempt, draft: b.written!.answer })),
  )
  .to(
    'judge',
    graph.modelRunner({
      name: 'judge',
      models: [{ endpointName: 'judge', modelClass: 'LLModel', executionMechanism: 'asyncio', modelArtifact: judge, resultPath: 'review' }],
    }),
  )
  .to(
    'verdict',
    step((b: Work) => {
      const said = b.review!.answer;
      if (said === 'PASS' || said.startsWith('FAIL')) return { ...b, verdict: said === 'PASS' ? 'pass' : 'fail' };
      throw new TypeError(`the judge said neither PASS nor FAIL: '${said}'`);
    }),
  )
  .to(
    'decide',
    choice((e) => ((e.body as Work).verdict === 'pass' ? 'reply' : 'count')),
  )
  .cycleTo('count');
f.add(
  'reply',
  step((b: Work) => ({ answer: b.draft, drafts: b.attempt, reviewed: true })),
  { after: 'decide' },
).respond();
// A side branch: runs for every draft, after the caller may already have its answer.
f.add(
  'audit',
  step(async (b: Work) => {
    await new Promise((resolve) => setTimeout(resolve, 50)); // as a write to an audit store would take
    audit.push(`${b.question} → ${b.draft}`);
    return b;
  }),
  { after: 'keep' },
);
// Every step without a handler of its own: on the responder's path its output is the answer.
f.errorHandler(
  'fallback',
  step((b: Work, { event }) => ({
    answer: b.draft ?? null,
    drafts: b.attempt,
    reviewed: false,
    reason: (event.metadata.error as { step: string; error: string }).error.split(':')[0],
  })),
);

const server = await serve(f.build(), { graph, port: 0 });
console.log(`rxserve listening on ${server.url}; the LLM is ${llm.url}`);
const ask = async (question: string) => {
  const response = await fetch(`${server.url}/ask`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ question }),
  });
  return {
    status: response.status,
    body: (await response.json()) as { answer: string | null; drafts: number; reviewed: boolean; reason?: string },
  };
};

const answers = await Promise.all(['What is RxJS?', 'Explain backpressure.', 'Prove that P != NP.', 'Is gibberish blue?'].map(ask));
for (const { status, body } of answers) console.log(status, JSON.stringify(body));
await server.close(); // waits for the audit branch, then closes the graph
console.log(`audit log (${audit.length} drafts):\n  ${audit.sort().join('\n  ')}`);

const [rx, pressure, proof, gibberish] = answers.map((a) => a.body);
const expected = [
  answers.every((a) => a.status === 200),
  rx.reviewed && rx.drafts === 1 && rx.answer === 'Draft 1: a short answer to "What is RxJS?".',
  pressure.reviewed && pressure.drafts === 2,
  !proof.reviewed && proof.drafts === 3 && proof.reason === 'CycleLimitError' && proof.answer?.startsWith('Draft 3'),
  !gibberish.reviewed && gibberish.drafts === 1 && gibberish.reason === 'TypeError',
  audit.length === 1 + 2 + 3 + 1,
  llm.requests.length === 2 * audit.length,
];
await llm.close();
if (!expected.every(Boolean)) {
  console.error(`unexpected results: ${JSON.stringify(expected)}`);
  process.exit(1);
}
