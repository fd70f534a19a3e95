// The browser's side of the public APIs: the token, requests with `Authorization: Bearer`, errors carrying the
// API's own message, and live collections kept by list+watch on the Kubernetes paths.

export { ApiError, apiFetch, apiJson, v1 } from './http.js';
export { clearToken, getToken, setToken, tokenWasRefused, useToken } from './auth.js';
export { useConnection } from './connection.js';
export { tokenFromKubeconfig } from './kubeconfig.js';
export { KINDS, type KindKey } from './kinds.js';
export { useResources, useEvents, WatchHub, WatchHubContext } from './watch.js';
export type * from './types.js';
