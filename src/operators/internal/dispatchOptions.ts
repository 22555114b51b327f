// Codecs for the options every dispatching operator shares (name, maxInFlight, maxQueue, ordered).
import * as t from 'io-ts';
import { NonEmptyString, nonNegativeInt, positiveInt } from '../../decode.js';
import { DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE, type DispatchLimits } from './dispatch.js';

export const dispatchOptionProps = {
  name: NonEmptyString,
  maxInFlight: positiveInt(false),
  maxQueue: nonNegativeInt(true),
  ordered: t.boolean,
};

/** The dispatcher limits from decoded options, with the defaults filled in. */
export function limitsFrom(
  options: { name?: string; maxInFlight?: number; maxQueue?: number; ordered?: boolean },
  defaultName: string,
): DispatchLimits {
  return {
    step: options.name ?? defaultName,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    maxQueue: options.maxQueue ?? DEFAULT_MAX_QUEUE,
    ordered: options.ordered ?? true,
  };
}
