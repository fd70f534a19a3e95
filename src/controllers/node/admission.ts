// Admission check for Nodes: a disk may leave `spec.disks` only once nothing lives on it. A disk that still holds
// replicas or backing-image copies is refused, naming them and the way to move them off; without the check the
// replicas on it would keep running unseen by scheduling and the copies would still count as healthy on a disk no
// node has. Longhorn refuses the same (its node validator). Writes that keep every disk are never refused.

import type { BackingImage } from '../../api/backing-image.js';
import { forbidden } from '../../api/field-errors.js';
import type { FieldError } from '../../api/kind.js';
import { DEFAULT_NAMESPACE, type KubeObject } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Replica } from '../../api/replica.js';
import { StoreError } from '../../store/errors.js';
import type { AdmissionPlugin } from '../../store/resource-store.js';

/** Names listed in a refusal; the rest are counted. */
const NAMED = 5;

const list = (what: string, names: string[]) =>
  `${what}${names.length > 1 ? 's' : ''} ${names.slice(0, NAMED).join(', ')}${names.length > NAMED ? ` and ${names.length - NAMED} more` : ''}`;

export const nodeAdmission: AdmissionPlugin = {
  kinds: ['Node'],
  async validateUpdate(obj, old, store) {
    const before = old as Node;
    const after = obj as Node;
    const removed = Object.keys(before.spec?.disks ?? {}).filter((d) => !(d in (after.spec?.disks ?? {})));
    if (removed.length === 0) return;
    const replicas = (await store.list<Replica>('Replica', { namespace: DEFAULT_NAMESPACE })).items.filter((r) => !r.metadata.deletionTimestamp);
    const images = (await store.list<BackingImage>('BackingImage', { namespace: DEFAULT_NAMESPACE })).items;
    const causes: FieldError[] = [];
    for (const disk of removed) {
      const uuid = before.status?.diskStatus?.[disk]?.diskUUID;
      if (!uuid) continue; // never registered: nothing can live there
      const onIt = replicas.filter((r) => r.spec?.diskID === uuid).map((r) => r.metadata.name ?? '').sort();
      const copies = images.filter((b) => uuid in (b.spec?.diskFileSpecMap ?? {})).map((b) => b.metadata.name ?? '').sort();
      if (onIt.length === 0 && copies.length === 0) continue;
      const copyList = copies.length === 1 ? `a copy of backing image ${copies[0]}` : `copies of ${list('backing image', copies)}`;
      const holds = [...(onIt.length ? [list('replica', onIt)] : []), ...(copies.length ? [copyList] : [])].join(' and ');
      const later = onIt.length ? ' (a replica once its replacement holds the data)' : '';
      causes.push(forbidden(`spec.disks.${disk}`, `disk ${disk} (${uuid}) still holds ${holds}: they move to other disks by themselves once spec.disks.${disk}.evictionRequested is true${later}; remove the disk once it holds nothing`));
    }
    if (causes.length > 0) refuse(obj, causes);
  },
};

function refuse(obj: KubeObject, causes: FieldError[]): never {
  const name = obj.metadata.name ?? '';
  throw new StoreError('Invalid', `Node "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    causes,
    details: { kind: 'nodes.longhorn.io', name },
  });
}
