// Hash routing (#/volumes/vol-1): the manager serves one index.html at `/`, and links stay shareable.

import { useSyncExternalStore } from 'react';

export type Route =
  | { page: 'backingimages' }
  | { page: 'backingimage'; name: string }
  | { page: 'volumes' }
  | { page: 'volume'; name: string }
  | { page: 'nodes' }
  | { page: 'settings' };

export function parseRoute(hash: string): Route {
  const [page = '', name] = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (page === 'backingimages' && name) return { page: 'backingimage', name };
  if (page === 'volumes' && name) return { page: 'volume', name };
  if (page === 'volumes') return { page: 'volumes' };
  if (page === 'nodes') return { page: 'nodes' };
  if (page === 'settings') return { page: 'settings' };
  return { page: 'backingimages' };
}

export const href = {
  backingImages: '#/backingimages',
  backingImage: (name: string) => `#/backingimages/${encodeURIComponent(name)}`,
  volumes: '#/volumes',
  volume: (name: string) => `#/volumes/${encodeURIComponent(name)}`,
  nodes: '#/nodes',
  settings: '#/settings',
};

const subscribe = (l: () => void) => {
  window.addEventListener('hashchange', l);
  return () => window.removeEventListener('hashchange', l);
};

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  return parseRoute(hash);
}
