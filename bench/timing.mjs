/**
 * The one timing loop of the modpow benchmarks, shared by bench/openssl.mjs
 * (under Node) and bench/compare.ts (under Deno) so both sides are measured
 * the same way.
 *
 * @module
 */

/**
 * Microseconds per call of `f`: one timed loop of at least `minMs`.
 *
 * @param {() => unknown} f the operation
 * @param {number} minMs how long the loop runs at least
 * @returns {number}
 */
export function microsecondsPerCall(f, minMs) {
  let iterations = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    f();
    iterations++;
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  return (elapsed * 1000) / iterations;
}
