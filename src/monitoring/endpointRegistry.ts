// The endpoint registry: one entry per model endpoint, its creation strategy applied when a graph
// starts, call counters, and a JSON file so a restarted service keeps its endpoint history.
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CreationStrategy, ExecutionMechanism } from '../model/entry.js';
import type { EventReport } from './monitor.js';

/** One endpoint as the registry keeps it. */
export interface EndpointEntry {
  readonly endpointName: string;
  /** Stable across restarts for 'inplace' and 'skip'; new for 'overwrite' and 'archive'. */
  readonly uid: string;
  modelClass: string;
  labels: Readonly<Record<string, string>> | readonly string[];
  executionMechanism: ExecutionMechanism;
  step: string;
  readonly createdAt: string;
  updatedAt: string;
  /** Set on an entry that 'archive' replaced; archived entries are history. */
  archivedAt?: string;
  readonly counters: { requests: number; errors: number };
}

/** An endpoint of a starting graph. */
export interface EndpointSpec {
  readonly endpointName: string;
  readonly modelClass: string;
  readonly labels: Readonly<Record<string, string>> | readonly string[];
  readonly executionMechanism: ExecutionMechanism;
  readonly step: string;
  readonly creationStrategy: CreationStrategy;
}

// A MonitorObserver by shape (the graph adds it to its monitor's observers), without an
// `implements` clause, which would carry the monitor's interfaces into the published typings.
export class EndpointRegistry {
  private list: EndpointEntry[] = [];
  private readonly live = new Map<string, EndpointEntry>();

  constructor(readonly path?: string) {}

  /** Every entry, archived ones included, oldest first. */
  entries(): readonly EndpointEntry[] {
    return this.list;
  }

  /** The current (not archived) entry of an endpoint. */
  current(endpointName: string): EndpointEntry | undefined {
    return this.live.get(endpointName);
  }

  /** Reads the registry file, if there is one. */
  async load(): Promise<void> {
    if (!this.path) return;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const parsed = JSON.parse(text) as { endpoints?: EndpointEntry[] };
    this.list = Array.isArray(parsed.endpoints) ? parsed.endpoints : [];
    this.live.clear();
    for (const entry of this.list) if (!entry.archivedAt) this.live.set(entry.endpointName, entry);
  }

  /**
   * Applies each endpoint's creation strategy (MLRun's): 'inplace' updates the current entry
   * (keeping its uid and counters), 'overwrite' replaces it, 'archive' keeps it as history and
   * starts a new one, 'skip' leaves an existing entry as it is. A new endpoint is created.
   */
  apply(specs: readonly EndpointSpec[], now = new Date().toISOString()): void {
    for (const spec of specs) {
      const existing = this.live.get(spec.endpointName);
      if (existing === undefined) {
        this.add(spec, now);
        continue;
      }
      switch (spec.creationStrategy) {
        case 'skip':
          break;
        case 'inplace':
          Object.assign(existing, {
            modelClass: spec.modelClass,
            labels: spec.labels,
            executionMechanism: spec.executionMechanism,
            step: spec.step,
            updatedAt: now,
          });
          break;
        case 'overwrite':
          this.list = this.list.filter((e) => e !== existing);
          this.add(spec, now);
          break;
        case 'archive':
          existing.archivedAt = now;
          this.add(spec, now);
          break;
      }
    }
  }

  private add(spec: EndpointSpec, now: string): void {
    const entry: EndpointEntry = {
      endpointName: spec.endpointName,
      uid: randomUUID(),
      modelClass: spec.modelClass,
      labels: spec.labels,
      executionMechanism: spec.executionMechanism,
      step: spec.step,
      createdAt: now,
      updatedAt: now,
      counters: { requests: 0, errors: 0 },
    };
    this.list.push(entry);
    this.live.set(spec.endpointName, entry);
  }

  /** @internal Counts every call (not only sampled records). */
  onEvent(report: EventReport): void {
    for (const call of report.calls) {
      const entry = this.live.get(call.entry.endpointName);
      if (entry === undefined) continue;
      entry.counters.requests++;
      if (call.error !== undefined) entry.counters.errors++;
    }
  }

  /** Writes the registry file atomically (a temporary file, then a rename). */
  async save(): Promise<void> {
    if (!this.path) return;
    await mkdir(dirname(this.path), { recursive: true });
    const temporary = `${this.path}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify({ version: 1, endpoints: this.list }, null, 2)}\n`);
    await rename(temporary, this.path);
  }
}
