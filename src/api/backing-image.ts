// BackingImage (longhorn.io/v1beta2, `lhbi`): a read-only base disk image that volumes are created from. Field
// names, the state strings and the defaulting/validation rules follow Longhorn's CRD and its admission webhook
// (webhook/resources/backingimage), with Stratum's stricter checks where a bad value would reach a file path.

import {
  ageColumn,
  checkDataEngineOnCreate,
  DATA_ENGINES,
  type DataEngine,
  immutableField,
  immutableOnceSet,
  record,
  specOf,
  statusOf,
  stringField,
} from './common.js';
import { childPath, invalid, notSupported, required } from './field-errors.js';
import { backingImageV1beta1 } from './backing-image-v1beta1.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { validatePathComponent } from './names.js';
import { arrayOf, bool, enumOf, int, int64, mapOf, obj, resourceSchema, str, strMap } from './schema.js';
import { settingInt } from './settings.js';

/** File state of one copy (shared by BackingImage, BackingImageDataSource and BackingImageManager). */
export const BACKING_IMAGE_STATES = [
  'pending',
  'starting',
  'ready-for-transfer',
  'ready',
  'in-progress',
  'failed',
  'failed-and-cleanup',
  'unknown',
] as const;
export type BackingImageState = (typeof BACKING_IMAGE_STATES)[number];

export const BACKING_IMAGE_SOURCE_TYPES = ['download', 'upload', 'export-from-volume', 'restore', 'clone'] as const;
export type BackingImageSourceType = (typeof BACKING_IMAGE_SOURCE_TYPES)[number];

/** Keys of `spec.sourceParameters`. */
export const SourceParam = {
  url: 'url',
  volumeName: 'volume-name',
  exportType: 'export-type',
  backupURL: 'backup-url',
  backupTargetName: 'backup-target-name',
  concurrentLimit: 'concurrent-limit',
  backingImage: 'backing-image',
  encryption: 'encryption',
  secret: 'secret',
  secretNamespace: 'secret-namespace',
} as const;

export const EXPORT_TYPES = ['raw', 'qcow2'] as const;
export const CLONE_ENCRYPTIONS = ['encrypt', 'decrypt', 'ignore'] as const;

export interface BackingImageDiskFileSpec {
  evictionRequested?: boolean;
  dataEngine?: DataEngine;
}

export interface BackingImageDiskFileStatus {
  dataEngine?: DataEngine;
  state?: BackingImageState | '';
  progress?: number;
  message?: string;
  lastStateTransitionTime?: string;
  /** Stratum: when every byte of this ready copy was last read and found to hash to the checksum (a scrub). */
  verifiedAt?: string;
  /** Stratum: the `stratum.io/scrub-requested` value this copy's last scrub answered. */
  scrubRequest?: string;
}

export interface BackingImageSpec {
  /** Deprecated by Longhorn in favour of diskFileSpecMap; kept so old manifests validate. */
  disks?: Record<string, string>;
  /** Disk UUID → desired copy on that disk: the set of disks that must hold a copy. */
  diskFileSpecMap?: Record<string, BackingImageDiskFileSpec>;
  /** Expected SHA-512 of the image file, 128 hex characters. */
  checksum?: string;
  sourceType?: BackingImageSourceType;
  sourceParameters?: Record<string, string>;
  minNumberOfCopies?: number;
  diskSelector?: string[];
  nodeSelector?: string[];
  secret?: string;
  secretNamespace?: string;
  dataEngine?: DataEngine;
}

export interface BackingImageStatus {
  ownerID?: string;
  /** Random id, part of every file path; immutable so a re-created image never reuses stale files. */
  uuid?: string;
  size?: number;
  virtualSize?: number;
  realSize?: number;
  checksum?: string;
  /**
   * The anchor of the image's chunk manifest (`<chunk size>:<SHA-256 hex>`, see ManifestAnchor): what its data source
   * computed in the same pass as the SHA-512. A copy synced between disks is verified chunk by chunk against a manifest
   * with this digest instead of hashing the whole file again. Set once, from the data source only (never from a copy).
   */
  chunkManifestDigest?: string;
  diskFileStatusMap?: Record<string, BackingImageDiskFileStatus> | null;
  diskLastRefAtMap?: Record<string, string> | null;
  v2FirstCopyStatus?: string;
  v2FirstCopyDisk?: string;
}

export type BackingImage = KubeObject<BackingImageSpec, BackingImageStatus>;

const SHA512_HEX = /^[0-9a-fA-F]{128}$/;

/** A chunk manifest's digest (`manifestDigest` of the backing-image manager) and the chunk size it was cut with. */
export interface ManifestAnchor {
  chunkSize: number;
  /** SHA-256, hex. */
  digest: string;
}

export function formatManifestAnchor(a: ManifestAnchor): string {
  return `${a.chunkSize}:${a.digest}`;
}

export function parseManifestAnchor(text: string | undefined): ManifestAnchor | undefined {
  const m = /^([1-9]\d{0,12}):([0-9a-f]{64})$/.exec(text ?? '');
  return m ? { chunkSize: Number(m[1]), digest: m[2] ?? '' } : undefined;
}

const dataEngineSchema = enumOf(DATA_ENGINES);

const schema = resourceSchema({
  description: 'BackingImage is a read-only base image that volumes are created from.',
  spec: obj({
    disks: strMap({ description: 'Deprecated: use diskFileSpecMap.' }),
    diskFileSpecMap: mapOf(obj({ evictionRequested: bool(), dataEngine: dataEngineSchema })),
    checksum: str({ description: 'Expected SHA-512 of the image file (128 hex characters).' }),
    sourceType: enumOf(BACKING_IMAGE_SOURCE_TYPES),
    sourceParameters: strMap(),
    minNumberOfCopies: int(),
    diskSelector: arrayOf(str()),
    nodeSelector: arrayOf(str()),
    secret: str(),
    secretNamespace: str(),
    dataEngine: enumOf(DATA_ENGINES, { default: 'v1' }),
  }),
  status: obj(
    {
      ownerID: str(),
      uuid: str(),
      size: int64(),
      virtualSize: int64(),
      realSize: int64(),
      checksum: str(),
      chunkManifestDigest: str({ description: 'The chunk size and SHA-256 of the chunk manifest the data source computed with the checksum.' }),
      diskFileStatusMap: mapOf(
        obj({ dataEngine: dataEngineSchema, state: str(), progress: int(), message: str(), lastStateTransitionTime: str(), verifiedAt: str(), scrubRequest: str() }),
        { nullable: true },
      ),
      diskLastRefAtMap: strMap({ nullable: true }),
      v2FirstCopyStatus: str(),
      v2FirstCopyDisk: str(),
    },
    { preserveUnknown: true },
  ),
});

function defaultOnCreate(o: KubeObject, ctx: DefaultingContext): void {
  const bi = o as BackingImage;
  const spec = (bi.spec ??= {});
  const status = (bi.status ??= {});
  if (status.uuid === undefined || status.uuid === '') status.uuid = ctx.randomId();
  if (spec.diskFileSpecMap === undefined || spec.diskFileSpecMap === null) spec.diskFileSpecMap = {};
  if (spec.sourceParameters === undefined || spec.sourceParameters === null) spec.sourceParameters = {};
  if (spec.dataEngine === undefined || (spec.dataEngine as string) === '') spec.dataEngine = 'v1';
  if (spec.minNumberOfCopies === undefined || spec.minNumberOfCopies === 0) {
    spec.minNumberOfCopies = settingInt('default-min-number-of-backing-image-copies', (n) => ctx.setting(n));
  }
  // A digest is case-insensitive hex; storing it lower-case lets every later comparison be a plain equality.
  if (typeof spec.checksum === 'string') spec.checksum = spec.checksum.trim().toLowerCase();
  const params = spec.sourceParameters;
  if (spec.sourceType === 'export-from-volume' && !params[SourceParam.exportType]) {
    params[SourceParam.exportType] = 'raw';
  }
  if (spec.sourceType === 'clone' && !params[SourceParam.encryption]) params[SourceParam.encryption] = 'ignore';
  if (spec.sourceType === 'restore' && !params[SourceParam.concurrentLimit]) {
    params[SourceParam.concurrentLimit] = String(settingInt('backup-concurrent-limit', (n) => ctx.setting(n)));
  }
}

function validateSource(sourceType: string, params: Record<string, unknown>): FieldError[] {
  const errs: FieldError[] = [];
  const base = 'spec.sourceParameters';
  const need = (key: string, why: string): void => {
    const v = params[key];
    if (typeof v !== 'string' || v.trim() === '') errs.push(required(childPath(base, key), why));
  };
  switch (sourceType) {
    case '':
      errs.push(required('spec.sourceType', 'one of download, upload, export-from-volume, restore, clone'));
      break;
    case 'download': {
      need(SourceParam.url, 'a download backing image needs the URL to download from');
      const url = stringField(params, SourceParam.url).trim();
      if (url !== '') {
        let parsed: URL | undefined;
        try {
          parsed = new URL(url);
        } catch {
          parsed = undefined;
        }
        if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
          errs.push(invalid(childPath(base, SourceParam.url), url, 'must be an http or https URL'));
        }
      }
      break;
    }
    case 'export-from-volume': {
      need(SourceParam.volumeName, 'an export-from-volume backing image needs the volume to export');
      const t = stringField(params, SourceParam.exportType);
      if (t !== '' && !(EXPORT_TYPES as readonly string[]).includes(t)) {
        errs.push(notSupported(childPath(base, SourceParam.exportType), t, EXPORT_TYPES));
      }
      break;
    }
    case 'restore':
      need(SourceParam.backupURL, 'a restore backing image needs the backup URL');
      break;
    case 'clone': {
      need(SourceParam.backingImage, 'a clone backing image needs the backing image to clone');
      const enc = stringField(params, SourceParam.encryption);
      if (enc !== '' && !(CLONE_ENCRYPTIONS as readonly string[]).includes(enc)) {
        errs.push(notSupported(childPath(base, SourceParam.encryption), enc, CLONE_ENCRYPTIONS));
      }
      if (enc === 'encrypt' || enc === 'decrypt') {
        need(SourceParam.secret, `${enc} needs the secret holding the key`);
        need(SourceParam.secretNamespace, `${enc} needs the namespace of the secret`);
      }
      break;
    }
  }
  return errs;
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = specOf(o);
  const status = statusOf(o);
  const oldSpec = specOf(old);
  const oldStatus = statusOf(old);

  errs.push(...validatePathComponent('metadata.name', o.metadata.name ?? ''));

  const checksum = stringField(spec, 'checksum');
  if (checksum !== '' && !SHA512_HEX.test(checksum)) {
    errs.push(invalid('spec.checksum', checksum, 'must be a SHA-512 digest: 128 hexadecimal characters'));
  }

  const sourceType = stringField(spec, 'sourceType');
  errs.push(...validateSource(sourceType, record(spec, 'sourceParameters')));

  const min = spec['minNumberOfCopies'];
  if (typeof min !== 'number' || min < 1) {
    errs.push(invalid('spec.minNumberOfCopies', min ?? 0, 'must be greater than or equal to 1'));
  }

  errs.push(...checkDataEngineOnCreate('spec.dataEngine', stringField(spec, 'dataEngine'), old));

  const uuid = stringField(status, 'uuid');
  if (uuid !== '') errs.push(...validatePathComponent('status.uuid', uuid));

  const anchor = stringField(status, 'chunkManifestDigest');
  if (anchor !== '' && !parseManifestAnchor(anchor)) {
    errs.push(invalid('status.chunkManifestDigest', anchor, 'must be "<chunk size>:<SHA-256 as 64 lower-case hexadecimal characters>"'));
  }

  if (old !== undefined) {
    errs.push(...immutableOnceSet('status.uuid', uuid, stringField(oldStatus, 'uuid')));
    errs.push(...immutableOnceSet('status.checksum', stringField(status, 'checksum'), stringField(oldStatus, 'checksum')));
    errs.push(...immutableOnceSet('status.chunkManifestDigest', anchor, stringField(oldStatus, 'chunkManifestDigest')));
    // Compared case-insensitively: create stores the digest lower-cased, a later apply may resend it as typed.
    errs.push(...immutableOnceSet('spec.checksum', checksum.toLowerCase(), stringField(oldSpec, 'checksum').toLowerCase()));
    errs.push(...immutableOnceSet('spec.secret', stringField(spec, 'secret'), stringField(oldSpec, 'secret')));
    errs.push(
      ...immutableOnceSet(
        'spec.secretNamespace',
        stringField(spec, 'secretNamespace'),
        stringField(oldSpec, 'secretNamespace'),
      ),
    );
    errs.push(...immutableField('spec.sourceType', spec['sourceType'], oldSpec['sourceType']));
    errs.push(...immutableField('spec.sourceParameters', spec['sourceParameters'] ?? {}, oldSpec['sourceParameters'] ?? {}));
    errs.push(...immutableOnceSet('spec.dataEngine', stringField(spec, 'dataEngine'), stringField(oldSpec, 'dataEngine')));
  }
  return errs;
}

export const backingImageInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'BackingImage',
  listKind: 'BackingImageList',
  plural: 'backingimages',
  singular: 'backingimage',
  shortNames: ['lhbi', 'bi'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'UUID', jsonPath: '.status.uuid', type: 'string', description: 'The system generated UUID' },
    { name: 'SourceType', jsonPath: '.spec.sourceType', type: 'string', description: 'The source of the backing image file data' },
    { name: 'Size', jsonPath: '.status.size', type: 'string', description: 'The backing image file size in each disk' },
    {
      name: 'VirtualSize',
      jsonPath: '.status.virtualSize',
      type: 'string',
      description: 'The virtual size of the image (may be larger than file size)',
    },
    ageColumn,
  ],
  schema,
  defaultOnCreate,
  validate,
  otherVersions: [backingImageV1beta1],
};
