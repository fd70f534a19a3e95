// Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`, `/version`): what `kubectl` reads to
// map kinds and short names to URLs. Everything is derived from the kind registry in src/api.

import { allKinds } from '../api/index.js';
import type { KindInfo } from '../api/kind.js';

export const SERVER_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-stratum',
  gitCommit: '',
  gitTreeState: 'clean',
  buildDate: '1970-01-01T00:00:00Z',
  goVersion: 'n/a',
  compiler: 'n/a',
  platform: `${process.platform}/${process.arch}`,
};

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

/** Every (group, version) served, with the kinds it serves. The storage version is listed first. */
export function groupVersions(): Map<string, { group: string; version: string; kinds: KindInfo[] }> {
  const out = new Map<string, { group: string; version: string; kinds: KindInfo[] }>();
  const add = (group: string, version: string, info: KindInfo) => {
    const gv = group ? `${group}/${version}` : version;
    const entry = out.get(gv) ?? { group, version, kinds: [] };
    entry.kinds.push(info);
    out.set(gv, entry);
  };
  for (const info of allKinds()) {
    add(info.group, info.version, info);
    for (const other of info.otherVersions ?? []) add(info.group, other.version, info);
  }
  return out;
}

export function apiVersions(serverAddress: string) {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

export function apiGroupList() {
  const groups = new Map<string, { name: string; versions: { groupVersion: string; version: string }[]; preferred: string }>();
  for (const [gv, { group, version, kinds }] of groupVersions()) {
    if (group === '') continue;
    const g = groups.get(group) ?? { name: group, versions: [], preferred: '' };
    g.versions.push({ groupVersion: gv, version });
    if (kinds.some((k) => k.version === version)) g.preferred ||= gv;
    groups.set(group, g);
  }
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groups.values()].map((g) => {
      const preferred = g.versions.find((v) => v.groupVersion === g.preferred) ?? g.versions[0];
      return { name: g.name, versions: g.versions, preferredVersion: preferred };
    }),
  };
}

export function apiResourceList(group: string, version: string) {
  const gv = group ? `${group}/${version}` : version;
  const entry = groupVersions().get(gv);
  if (!entry) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const info of entry.kinds) {
    resources.push({
      name: info.plural,
      singularName: info.singular,
      namespaced: info.namespaced,
      kind: info.kind,
      verbs: VERBS,
      shortNames: info.shortNames,
    });
    if (info.hasStatusSubresource) {
      resources.push({ name: `${info.plural}/status`, singularName: '', namespaced: info.namespaced, kind: info.kind, verbs: ['get', 'patch', 'update'] });
    }
    if (info.scale) {
      resources.push({ name: `${info.plural}/scale`, singularName: '', namespaced: info.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    }
    if (info.kind === 'Pod') {
      resources.push({ name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv, resources };
}
