// EndpointRecord: what monitoring reports for one model call (docs/design.md §9).

/** One model call, as reported on `graph.monitoring$`. */
export interface EndpointRecord {
  readonly endpointName: string;
  readonly modelClass: string;
  readonly step: string;
  readonly labels: Readonly<Record<string, string>> | readonly string[];
  readonly eventId: string;
  /** UTC start, ISO-8601. */
  readonly when: string;
  readonly latencyMs: number;
  readonly request: { readonly inputs: unknown };
  readonly response?: { readonly outputs: unknown };
  readonly error?: string;
  /** Token usage of LLM calls. */
  readonly usage?: Readonly<Record<string, unknown>>;
  /** The graph's sampling percentage when the record was kept. */
  readonly samplingPercentage: number;
  /** How many calls this record stands for (100 / samplingPercentage; 1 for errors, never sampled). */
  readonly effectiveSampleCount: number;
}
