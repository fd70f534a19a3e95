// Waiting on work that may never end. A read from a hung disk sits in the thread pool until the disk answers, and a
// FileHandle closes only after its reads end, so aborting the signal the work was given does not end the wait for
// it. `abandonOnAbort` stops waiting when the signal aborts, rejecting with its reason; the work goes on unseen (its
// later failure is swallowed) and frees what it holds if the disk ever answers.

export function abandonOnAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
