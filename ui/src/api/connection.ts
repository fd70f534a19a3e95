// Whether the watches reach the manager. A watch that cannot connect reports `lost`; the next one that does
// reports `ok`. The banner in the shell reads this.

import { useSyncExternalStore } from 'react';

export type ConnectionState = 'ok' | 'lost';

let state: ConnectionState = 'ok';
let lastError = '';
const listeners = new Set<() => void>();

export function reportConnection(next: ConnectionState, error = ''): void {
  if (next === state && error === lastError) return;
  state = next;
  lastError = error;
  for (const l of listeners) l();
}

const subscribe = (l: () => void) => {
  listeners.add(l);
  return () => listeners.delete(l);
};

export function useConnection(): { state: ConnectionState; error: string } {
  const s = useSyncExternalStore(subscribe, () => state);
  return { state: s, error: lastError };
}
