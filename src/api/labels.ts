// Names of objects controllers create, derived so that every controller (and every manager restart) computes
// the same one.

import { createHash } from 'node:crypto';

/** Longhorn's BackingImageManager name: one per (manager image, disk), so a new image gets new managers. */
export function backingImageManagerName(image: string, diskUUID: string): string {
  return `bim-${createHash('sha224').update(`${image}-${diskUUID}`).digest('hex')}`;
}

/** Pod names of data-plane processes. */
export const bimPodName = (bimName: string) => bimName;
export const dataSourcePodName = (biName: string) => `backing-image-ds-${biName}`;

/** Labels on every object a controller creates, so they can be found by selector. */
export const LABEL_COMPONENT = 'longhorn.io/component';
export const LABEL_NODE = 'longhorn.io/node';
export const LABEL_DISK_UUID = 'longhorn.io/disk-uuid';
export const LABEL_BACKING_IMAGE = 'longhorn.io/backing-image';
export const LABEL_BIM = 'longhorn.io/backing-image-manager';
export const LABEL_BIDS = 'longhorn.io/backing-image-data-source';
/** On a Volume the provisioner made for a claim: the claim's name and namespace. */
export const LABEL_PVC = 'longhorn.io/pvc';
export const LABEL_PVC_NAMESPACE = 'longhorn.io/pvc-namespace';

/** The finalizer Longhorn puts on its objects. */
export const LONGHORN_FINALIZER = 'longhorn.io';

/**
 * On a BackingImage: a time (ISO 8601) before which every ready copy is to be scrubbed again, whatever
 * `backing-image-scrub-interval` says (`stratum bi scrub`): a copy last verified before it is read again now.
 */
export const ANNOTATION_SCRUB_REQUESTED = 'stratum.io/scrub-requested';

/** Longhorn's InstanceManager name: one per (instance-manager image, node), so a new image gets new managers. */
export function instanceManagerName(image: string, nodeName: string): string {
  return `instance-manager-${createHash('sha224').update(`${image}-${nodeName}`).digest('hex').slice(0, 32)}`;
}
export const imPodName = (imName: string) => imName;

/** A volume's engine; one per volume (a live migration would add a second). */
export const engineNameFor = (volume: string) => `${volume}-e-0`;
/** A new replica of a volume: a random suffix, as Longhorn does, so a replacement never reuses a failed name. */
export const replicaNameFor = (volume: string, suffix: string) => `${volume}-r-${suffix}`;

export const LABEL_VOLUME = 'longhorn.io/volume';
export const LABEL_INSTANCE_MANAGER = 'longhorn.io/instance-manager';
