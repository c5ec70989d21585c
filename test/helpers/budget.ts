import * as os from 'node:os';

/**
 * The time budget of a suite that does real work (bundles, npm installs, model runs, many processes). Jest's
 * timeout is there to end a hung test, never to time one: a busy machine (a CI runner, another `npm test`)
 * makes the work slower, not wrong, so the budget scales with the machine's load when the suite starts, with a
 * margin of 3 on top. Speed is measured by the benchmark (bench/), which prints figures; no test races the clock.
 */
export function loadScaledBudget(idleSeconds: number): number {
  const loadPerCore = os.loadavg()[0]! / os.availableParallelism();
  return Math.round(idleSeconds * 1000 * 3 * Math.max(1, loadPerCore));
}
