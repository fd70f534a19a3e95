// The API token: kept in sessionStorage (gone when the tab closes), read by every request. A 401 from any request
// clears it, which sends the UI back to its login screen.

import { useSyncExternalStore } from 'react';

const KEY = 'stratum.token';
const listeners = new Set<() => void>();

export function getToken(): string {
  return sessionStorage.getItem(KEY) ?? '';
}

export function setToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
  for (const l of listeners) l();
}

let refused = false;

/** True once a token was refused (401) in this page: the login screen says so. */
export function tokenWasRefused(): boolean {
  return refused;
}

/** Forgets the token; `wasRefused` when the server said 401 (rather than the user logging out). */
export function clearToken(wasRefused = false): void {
  refused = wasRefused;
  sessionStorage.removeItem(KEY);
  for (const l of listeners) l();
}

function subscribe(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function useToken(): string {
  return useSyncExternalStore(subscribe, getToken);
}
