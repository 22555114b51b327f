// The `rxserve` command (docs/design.md §14): serve, test, validate and schema over a spec file.
import { parseArgs } from 'node:util';
import { decodeOrThrow, Port } from '../decode.js';
import { ConfigError, describeError } from '../errors.js';
import { invoker } from '../serve/invoker.js';
import { serve, type Server } from '../serve/serve.js';
import type { RedisStream } from '../streams/redisStream.js';
import { checkModels } from '../spec/checkModels.js';
import { specSchema } from '../spec/graphSpec.js';
import { buildSpec, readSpec } from '../spec/load.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 bad spec or arguments. */
const OK = 0;
const FAILED = 1;
const BAD = 2;

const HELP: Record<string, string> = {
  main: `Usage: rxserve <command> [options]

Commands:
  serve <spec> [--port N] [--host H]   serve the spec's graph over HTTP (and its Redis source)
  test <spec> '<json>'                 run one request through the graph, print the answer body
  validate <spec>                      check the spec (exit 0, or 2 with what is wrong)
  schema                               print the spec's JSON Schema (draft 2020-12)

Run 'rxserve <command> --help' for a command's options. Exit codes: 0 ok, 1 runtime failure,
2 bad spec or arguments. Spec format: docs/spec.md.`,
  serve: `Usage: rxserve serve <spec> [--port N] [--host H]

Loads the graph's models, then serves the pipeline over HTTP (docs/design.md §11) and, when the spec has a
'source:', consumes its Redis stream (§12). Prints 'rxserve listening on <url>' once ready. On
SIGINT or SIGTERM it stops taking requests, answers those in flight, closes and exits 0.

Options:
  --port N   the HTTP port (overrides serve.port; default 8080; 0 picks a free port)
  --host H   the HTTP host (overrides serve.host; default 127.0.0.1)
  -h, --help`,
  test: `Usage: rxserve test <spec> '<json>'

Runs one request body through the graph and prints the output body as JSON (exit 0); an errored
answer prints {"error":"<Name>: <message>"} (exit 1).

Options:
  -h, --help`,
  validate: `Usage: rxserve validate <spec>

Checks the spec (fields, modules, selectors, endpoint names) without loading or running models:
exit 0, or exit 2 with the ConfigError on stderr.

Options:
  -h, --help`,
  schema: `Usage: rxserve schema

Prints the JSON Schema (draft 2020-12) of spec files, for editors.

Options:
  -h, --help`,
};

/** What the command writes to and listens on; a test may pass its own. */
export interface CliIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Resolves when the process is asked to stop (SIGINT / SIGTERM). */
  readonly stopSignal: () => Promise<string>;
}

const processIO: CliIO = {
  stdout: (text) => void process.stdout.write(`${text}\n`),
  stderr: (text) => void process.stderr.write(`${text}\n`),
  stopSignal: () =>
    new Promise((resolve) => {
      const stop = (signal: string) => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(signal);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }),
};

/** Runs `rxserve <argv>` and resolves with its exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    (command === undefined ? io.stderr : io.stdout)(HELP.main);
    return command === undefined ? BAD : OK;
  }
  if (!Object.hasOwn(HELP, command) || command === 'main') {
    io.stderr(`rxserve: unknown command '${command}'\n\n${HELP.main}`);
    return BAD;
  }
  let parsed: { values: { port?: string; host?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...rest],
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        ...(command === 'serve' ? { port: { type: 'string' }, host: { type: 'string' } } : {}),
      },
    }) as typeof parsed;
  } catch (error) {
    io.stderr(`rxserve ${command}: ${(error as Error).message}\n\n${HELP[command]}`);
    return BAD;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(HELP[command]);
    return OK;
  }
  const wanted = { serve: 1, test: 2, validate: 1, schema: 0 }[command as 'serve' | 'test' | 'validate' | 'schema'];
  if (positionals.length !== wanted) {
    io.stderr(`rxserve ${command}: expected ${wanted} argument(s), got ${positionals.length}\n\n${HELP[command]}`);
    return BAD;
  }
  try {
    switch (command) {
      case 'schema':
        io.stdout(JSON.stringify(specSchema(), null, 2));
        return OK;
      case 'validate':
        return await validate(positionals[0], io);
      case 'test':
        return await test(positionals[0], positionals[1], io);
      default:
        return await serveSpec(positionals[0], values, io);
    }
  } catch (error) {
    io.stderr(error instanceof ConfigError ? `rxserve ${command}: ${error.message}` : `rxserve ${command}: ${describeError(error)}`);
    return error instanceof ConfigError ? BAD : FAILED;
  }
}

async function validate(file: string, io: CliIO): Promise<number> {
  const read = await readSpec(file);
  const { graph } = await buildSpec(read);
  await graph.close();
  try {
    await checkModels(read.spec, read.baseDir);
  } catch (error) {
    throw error instanceof ConfigError ? read.locate(error) : error;
  }
  io.stdout(`${file}: ok`);
  return OK;
}

async function test(file: string, json: string, io: CliIO): Promise<number> {
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch (error) {
    io.stderr(`rxserve test: the request is not valid JSON: ${(error as Error).message}`);
    return BAD;
  }
  const { graph, pipeline } = await buildSpec(await readSpec(file));
  const client = invoker(pipeline, { graph });
  try {
    const answer = await client.invoke(body);
    if (answer.error !== undefined) {
      io.stdout(JSON.stringify({ error: describeError(answer.error) }));
      return FAILED;
    }
    io.stdout(JSON.stringify(answer.body ?? null));
    return OK;
  } finally {
    await client.close();
  }
}

async function serveSpec(file: string, args: { port?: string; host?: string }, io: CliIO): Promise<number> {
  // Checked by serve()'s own rule (the Port codec), before the graph loads: a bad --port is a
  // ConfigError (exit 2). Digits become a number; anything else is passed as text for it to name.
  const port = args.port === undefined ? undefined : decodeOrThrow(Port, /^\d+$/.test(args.port) ? Number(args.port) : args.port, '--port');
  const read = await readSpec(file);
  const { graph, pipeline } = await buildSpec(read);
  const stopped = io.stopSignal();
  const { spec } = read;
  // HTTP unless the spec only names a Redis source (and no --port / --host asks for it).
  const http = spec.serve !== undefined || spec.source === undefined || args.port !== undefined || args.host !== undefined;
  let server: Server | undefined;
  let stream: RedisStream | undefined;
  // The Redis source ending in an error ends the command (exit 1), as a signal ends it (exit 0).
  let sourceFailed: (error: unknown) => void = () => undefined;
  const failure = new Promise<{ error: unknown }>((resolve) => (sourceFailed = (error) => resolve({ error })));
  try {
    await graph.ready();
    if (spec.source !== undefined) {
      const { redisStream } = await import('../streams/redisStream.js');
      const { url, ...options } = spec.source.redis;
      stream = redisStream({ ...options, redis: url });
      const output = spec.source.output;
      const consumer = stream;
      stream.events$.pipe(pipeline, consumer.commit({ stream: output })).subscribe({
        error: (error: unknown) => sourceFailed(error),
      });
    }
    if (http) {
      server = await serve(pipeline, {
        ...spec.serve,
        ...(port !== undefined ? { port } : {}),
        ...(args.host !== undefined ? { host: args.host } : {}),
        graph,
      });
    }
  } catch (error) {
    await stream?.close().catch(() => undefined);
    await graph.close();
    throw error;
  }
  const where = server?.url ?? `${spec.source!.redis.url} (stream ${spec.source!.redis.stream}, group ${spec.source!.redis.group})`;
  io.stdout(`rxserve listening on ${where}`);
  const ended = await Promise.race([stopped.then((signal) => ({ signal })), failure]);
  if ('error' in ended) io.stderr(`rxserve serve: the Redis source failed: ${describeError(ended.error)}; closing`);
  else io.stderr(`rxserve serve: ${ended.signal}: closing (answering requests in flight)`);
  // Redis first: its in-flight messages still need the graph, which the server closes.
  await stream?.close().catch(() => undefined);
  if (server !== undefined) await server.close();
  else await graph.close();
  return 'error' in ended ? FAILED : OK;
}
