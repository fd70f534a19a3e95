// Kubernetes resource semantics over a revisioned key/value Backend: names, uids, defaults, validation,
// resourceVersion concurrency, generation, the status subresource, finalizers and deletionTimestamp, patches,
// admission checks, and list/watch with selectors. Backend-independent, so an etcd backend slots in unchanged.

import { randomBytes, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import fastJsonPatch from 'fast-json-patch';
import type { DefaultingContext, KindInfo } from '../api/kind.js';
import type { KubeObject, ObjectMeta } from '../api/meta.js';
import { apiVersionOf, findKind, pruneUnknownFields, settingDefault, validateObject } from '../api/index.js';
import { StoreError, isConflict } from './errors.js';
import { mergePatch } from './merge-patch.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type {
  Backend,
  DeleteOptions,
  DeleteResult,
  ListOptions,
  ListResult,
  PatchType,
  Store,
  WatchEvent,
  WatchOptions,
  WriteOptions,
  WriteResult,
} from './types.js';

/** Semantic checks that need the rest of the store (references between objects). Throw a StoreError to refuse. */
export interface AdmissionPlugin {
  kinds: string[];
  validateCreate?(obj: KubeObject, store: Store): Promise<void>;
  validateUpdate?(obj: KubeObject, old: KubeObject, store: Store): Promise<void>;
  validateDelete?(obj: KubeObject, store: Store): Promise<void>;
}

export interface ResourceStoreOptions {
  backend: Backend;
  admission?: AdmissionPlugin[];
  now?: () => Date;
}

export const FOREGROUND_FINALIZER = 'foregroundDeletion';
export const ORPHAN_FINALIZER = 'orphan';

const MAX_PATCH_RETRIES = 8;

export function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export class ResourceStore implements Store {
  readonly #backend: Backend;
  readonly #admission: AdmissionPlugin[];
  readonly #now: () => Date;
  /**
   * Setting values for defaulting (e.g. minNumberOfCopies), read from the backend before each defaulting create:
   * with several managers on one etcd, another manager may have changed them, so nothing is cached across calls.
   */
  #settings = new Map<string, string>();

  constructor(opts: ResourceStoreOptions) {
    this.#backend = opts.backend;
    this.#admission = opts.admission ?? [];
    this.#now = opts.now ?? (() => new Date());
  }

  /** Loads what defaulting needs. Call once before serving. */
  async init(): Promise<void> {
    await this.#loadSettings();
  }

  async #loadSettings(): Promise<void> {
    const { entries } = await this.#backend.list('Setting/');
    const next = new Map<string, string>();
    for (const { value } of entries) {
      if (value.metadata.name && typeof value['value'] === 'string') next.set(value.metadata.name, value['value']);
    }
    this.#settings = next;
  }

  addAdmission(plugin: AdmissionPlugin): void {
    this.#admission.push(plugin);
  }

  get backend(): Backend {
    return this.#backend;
  }

  async get<T extends KubeObject>(kind: string, namespace: string, name: string): Promise<T> {
    const info = this.#kind(kind);
    const ns = this.#ns(info, namespace);
    const entry = await this.#backend.get(objectKey(info.kind, ns, name));
    if (!entry) throw notFound(info, name);
    return withRv(entry.value, entry.rev) as T;
  }

  async list<T extends KubeObject>(kind: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    const info = this.#kind(kind);
    const match = matcher(opts);
    const { entries, rev } = await this.#backend.list(prefixOf(info, opts.namespace));
    const items = entries.map((e) => withRv(e.value, e.rev)).filter(match) as T[];
    return { items, resourceVersion: String(rev) };
  }

  async create<T extends KubeObject>(input: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    const info = this.#kind(input.kind);
    const warnings: string[] = [];
    const obj = this.#toStorageVersion(info, structuredClone(input) as KubeObject, warnings);
    const meta = obj.metadata ?? (obj.metadata = {});
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    if (!meta.name) throw invalid(info, '', [{ field: 'metadata.name', reason: 'FieldValueRequired', message: 'name or generateName is required' }]);
    meta.namespace = this.#ns(info, meta.namespace ?? '');
    if (!info.namespaced) delete meta.namespace;
    this.#prune(info, obj, opts, warnings);
    if (info.defaultOnCreate) {
      await this.#loadSettings();
      info.defaultOnCreate(obj, this.#defaultingContext());
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = this.#timestamp();
    if (info.hasSpec) meta.generation = 1;
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    this.#validate(info, obj, undefined);
    for (const p of this.#pluginsFor(info)) await p.validateCreate?.(obj, this);
    if (opts.dryRun) return { object: obj as T, warnings };
    const key = objectKey(info.kind, meta.namespace ?? '', meta.name);
    const entry = await this.#backend.create(key, (rev) => withRv(obj, rev)).catch((err: unknown) => {
      if (err instanceof StoreError && err.code === 'AlreadyExists') {
        throw new StoreError('AlreadyExists', `${info.plural}.${groupOf(info)} "${meta.name}" already exists`, {
          details: { kind: info.plural, name: meta.name ?? '' },
        });
      }
      throw err;
    });
    return { object: entry.value as T, warnings };
  }

  async update<T extends KubeObject>(input: T, opts: WriteOptions = {}): Promise<WriteResult<T>> {
    const info = this.#kind(input.kind);
    const warnings: string[] = [];
    const obj = this.#toStorageVersion(info, structuredClone(input) as KubeObject, warnings);
    const name = obj.metadata?.name;
    if (!name) throw invalid(info, '', [{ field: 'metadata.name', reason: 'FieldValueRequired', message: 'name is required' }]);
    const ns = this.#ns(info, obj.metadata.namespace ?? '');
    const key = objectKey(info.kind, ns, name);
    const current = await this.#backend.get(key);
    if (!current) throw notFound(info, name);
    const wantRv = obj.metadata.resourceVersion;
    if (wantRv && wantRv !== String(current.rev)) throw conflictError(info, name);
    return this.#replace(info, key, current.value, current.rev, obj, opts, warnings) as Promise<WriteResult<T>>;
  }

  async patch<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts: WriteOptions = {},
  ): Promise<WriteResult<T>> {
    const info = this.#kind(kind);
    const ns = this.#ns(info, namespace);
    const key = objectKey(info.kind, ns, name);
    // A patch carries no resourceVersion precondition unless it sets one, so a concurrent writer only means retry.
    for (let attempt = 0; ; attempt++) {
      const current = await this.#backend.get(key);
      if (!current) throw notFound(info, name);
      const base = withRv(current.value, current.rev);
      const patched = applyPatch(info, name, base, type, patch);
      const wantRv = patched.metadata?.resourceVersion;
      if (wantRv && wantRv !== String(current.rev)) throw conflictError(info, name);
      try {
        return (await this.#replace(info, key, current.value, current.rev, patched, opts, [])) as WriteResult<T>;
      } catch (err) {
        if (!isConflict(err) || attempt >= MAX_PATCH_RETRIES) throw err;
      }
    }
  }

  async delete<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    opts: DeleteOptions = {},
  ): Promise<DeleteResult<T>> {
    const info = this.#kind(kind);
    const ns = this.#ns(info, namespace);
    const key = objectKey(info.kind, ns, name);
    for (let attempt = 0; ; attempt++) {
      const current = await this.#backend.get(key);
      if (!current) throw notFound(info, name);
      const obj = withRv(current.value, current.rev);
      const pre = opts.preconditions;
      if (pre?.uid && pre.uid !== obj.metadata.uid) {
        throw new StoreError('Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${obj.metadata.uid}`);
      }
      if (pre?.resourceVersion && pre.resourceVersion !== String(current.rev)) throw conflictError(info, name);
      if (!obj.metadata.deletionTimestamp) {
        for (const p of this.#pluginsFor(info)) await p.validateDelete?.(obj, this);
      }
      const finalizers = [...(obj.metadata.finalizers ?? [])];
      const policy = opts.propagationPolicy;
      if (!obj.metadata.deletionTimestamp) {
        if (policy === 'Foreground' && !finalizers.includes(FOREGROUND_FINALIZER)) finalizers.push(FOREGROUND_FINALIZER);
        if (policy === 'Orphan' && !finalizers.includes(ORPHAN_FINALIZER)) finalizers.push(ORPHAN_FINALIZER);
      }
      if (opts.dryRun) return { object: obj as T, deleted: finalizers.length === 0 };
      try {
        if (finalizers.length === 0) {
          const entry = await this.#backend.delete(key, current.rev, (rev) => withRv(obj, rev));
          return { object: entry.value as T, deleted: true };
        }
        if (obj.metadata.deletionTimestamp && isDeepStrictEqual(finalizers, obj.metadata.finalizers)) {
          return { object: obj as T, deleted: false };
        }
        const next = structuredClone(obj);
        next.metadata.finalizers = finalizers;
        next.metadata.deletionTimestamp ??= this.#timestamp();
        next.metadata.deletionGracePeriodSeconds ??= 0;
        if (info.hasSpec) next.metadata.generation = (next.metadata.generation ?? 1) + 1;
        const entry = await this.#backend.update(key, current.rev, (rev) => withRv(next, rev));
        return { object: entry.value as T, deleted: false };
      } catch (err) {
        if (!isConflict(err) || attempt >= MAX_PATCH_RETRIES) throw err;
      }
    }
  }

  async *watch<T extends KubeObject>(kind: string, opts: WatchOptions): AsyncIterable<WatchEvent<T>> {
    const info = this.#kind(kind);
    const match = matcher(opts);
    const prefix = prefixOf(info, opts.namespace);
    let after: number;
    if (!opts.resourceVersion || opts.resourceVersion === '0') {
      // Kubernetes semantics: start with a synthetic ADDED for every current object, then changes.
      const { entries, rev } = await this.#backend.list(prefix);
      for (const e of entries) {
        const obj = withRv(e.value, e.rev);
        if (match(obj)) yield { type: 'ADDED', object: obj as T };
      }
      after = rev;
    } else {
      after = Number(opts.resourceVersion);
      if (!Number.isSafeInteger(after) || after < 0) {
        throw new StoreError('BadRequest', `invalid resourceVersion "${opts.resourceVersion}"`);
      }
    }
    for await (const ev of this.#backend.watch(prefix, after, opts.signal)) {
      const obj = withRv(ev.value, ev.rev);
      // A selector watch sees an object leave the selection as DELETED, like Kubernetes does not; we keep it
      // simple and only filter: controllers using selectors re-list on start.
      if (!match(obj)) continue;
      const type = ev.type === 'delete' ? 'DELETED' : ev.created ? 'ADDED' : 'MODIFIED';
      yield { type, object: obj as T };
    }
  }

  async #replace(
    info: KindInfo,
    key: string,
    stored: KubeObject,
    rev: number,
    input: KubeObject,
    opts: WriteOptions,
    warnings: string[],
  ): Promise<WriteResult> {
    const old = withRv(stored, rev);
    let next: KubeObject;
    if (opts.subresource === 'status') {
      if (!info.hasStatusSubresource) throw new StoreError('NotFound', `${info.plural} has no status subresource`);
      next = structuredClone(old);
      if (input.status === undefined) delete next.status;
      else next.status = input.status;
    } else {
      next = input;
      this.#prune(info, next, opts, warnings);
      info.defaultOnUpdate?.(next, old);
      if (info.hasStatusSubresource) {
        if (old.status === undefined) delete next.status;
        else next.status = structuredClone(old.status);
      }
    }
    // Identity and bookkeeping fields are the server's, whatever the client sent.
    const meta: ObjectMeta = next.metadata ?? (next.metadata = {});
    meta.name = old.metadata.name ?? '';
    if (info.namespaced) meta.namespace = old.metadata.namespace ?? '';
    else delete meta.namespace;
    copyOrDelete(meta, old.metadata, 'uid');
    copyOrDelete(meta, old.metadata, 'creationTimestamp');
    copyOrDelete(meta, old.metadata, 'deletionTimestamp');
    copyOrDelete(meta, old.metadata, 'deletionGracePeriodSeconds');
    copyOrDelete(meta, old.metadata, 'generation');
    if (opts.subresource === 'status') {
      next.metadata = { ...old.metadata };
    }
    if (old.metadata.deletionTimestamp) {
      // Once deleting, finalizers may only be removed, never added.
      const before = new Set(old.metadata.finalizers ?? []);
      const added = (meta.finalizers ?? []).filter((f) => !before.has(f));
      if (added.length > 0) {
        throw invalid(info, meta.name, [{
          field: 'metadata.finalizers',
          reason: 'FieldValueForbidden',
          message: `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`,
        }]);
      }
    }
    this.#validate(info, next, old);
    if (info.hasSpec && specChanged(info, old, next)) meta.generation = (old.metadata.generation ?? 1) + 1;
    delete meta.resourceVersion;
    const oldCmp = { ...old, metadata: { ...old.metadata, resourceVersion: undefined } };
    if (isDeepStrictEqual(JSON.parse(JSON.stringify(oldCmp)), JSON.parse(JSON.stringify(next)))) {
      return { object: old, warnings };
    }
    if (opts.subresource !== 'status') {
      for (const p of this.#pluginsFor(info)) await p.validateUpdate?.(next, old, this);
    }
    if (opts.dryRun) return { object: next, warnings };
    if (meta.deletionTimestamp && (meta.finalizers ?? []).length === 0) {
      const entry = await this.#backend.delete(key, rev, (r) => withRv(next, r));
      return { object: entry.value, warnings };
    }
    const entry = await this.#backend.update(key, rev, (r) => withRv(next, r));
    return { object: entry.value, warnings };
  }

  #kind(kind: string): KindInfo {
    const info = findKind(kind);
    if (!info) throw new StoreError('NotFound', `the server doesn't have a resource type "${kind}"`);
    return info;
  }

  #ns(info: KindInfo, namespace: string): string {
    if (!info.namespaced) return '';
    if (!namespace) throw new StoreError('BadRequest', `${info.kind} is namespaced: a namespace is required`);
    return namespace;
  }

  #toStorageVersion(info: KindInfo, obj: KubeObject, warnings: string[]): KubeObject {
    const want = apiVersionOf(info.kind);
    if (!obj.apiVersion || obj.apiVersion === want) {
      obj.apiVersion = want;
      return obj;
    }
    const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
    const other = group === info.group ? info.otherVersions?.find((v) => v.version === version) : undefined;
    if (!other) {
      throw new StoreError('BadRequest', `no kind "${info.kind}" is registered for version "${obj.apiVersion}"`);
    }
    warnings.push(`${obj.apiVersion} ${info.kind} is deprecated; stored as ${want}`);
    const converted = other.toStorage(obj);
    converted.apiVersion = want;
    return converted;
  }

  #prune(info: KindInfo, obj: KubeObject, opts: WriteOptions, warnings: string[]): void {
    const unknown = pruneUnknownFields(info, obj);
    if (unknown.length === 0) return;
    if (opts.strictFields) {
      throw invalid(info, obj.metadata?.name ?? '', unknown.map((f) => ({
        field: f,
        reason: 'FieldValueInvalid',
        message: `unknown field "${f}"`,
      })));
    }
    for (const f of unknown) warnings.push(`unknown field "${f}"`);
  }

  #validate(info: KindInfo, obj: KubeObject, old: KubeObject | undefined): void {
    const errors = validateObject(info, obj, old);
    if (errors.length > 0) throw invalid(info, obj.metadata?.name ?? '', errors);
  }

  #pluginsFor(info: KindInfo): AdmissionPlugin[] {
    return this.#admission.filter((p) => p.kinds.includes(info.kind));
  }

  #defaultingContext(): DefaultingContext {
    return {
      setting: (name) => this.#settings.get(name) ?? settingDefault(name),
      randomId: () => randomBytes(4).toString('hex'),
      now: this.#now,
    };
  }

  #timestamp(): string {
    return this.#now().toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
}

function groupOf(info: KindInfo): string {
  return info.group === '' ? '' : info.group;
}

function prefixOf(info: KindInfo, namespace: string | undefined): string {
  return info.namespaced && namespace ? `${info.kind}/${namespace}/` : `${info.kind}/`;
}

function matcher(opts: ListOptions): (obj: KubeObject) => boolean {
  const labels = parseLabelSelector(opts.labelSelector);
  const fields = parseFieldSelector(opts.fieldSelector);
  return (o) => labels(o) && fields(o);
}

function withRv(obj: KubeObject, rev: number): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rev) } };
}

function copyOrDelete<K extends keyof ObjectMeta>(to: ObjectMeta, from: ObjectMeta, key: K): void {
  if (from[key] === undefined) delete to[key];
  else to[key] = from[key];
}

/** Everything but metadata and status is "spec" (Setting keeps its value at the top level). */
function specChanged(info: KindInfo, old: KubeObject, next: KubeObject): boolean {
  const strip = (o: KubeObject) => {
    const { metadata: _m, status: _s, ...rest } = o;
    return JSON.parse(JSON.stringify(rest)) as unknown;
  };
  void info;
  return !isDeepStrictEqual(strip(old), strip(next));
}

function applyPatch(info: KindInfo, name: string, base: KubeObject, type: PatchType, patch: unknown): KubeObject {
  if (type === 'merge') {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw new StoreError('BadRequest', 'a merge patch must be a JSON object');
    }
    return mergePatch(base, patch) as KubeObject;
  }
  if (!Array.isArray(patch)) throw new StoreError('BadRequest', 'a JSON patch must be an array of operations');
  const problem = fastJsonPatch.validate(patch as fastJsonPatch.Operation[], base);
  if (problem) {
    throw new StoreError('Invalid', `the JSON patch for ${info.kind} "${name}" is invalid: ${problem.message.split('\n')[0]}`, {
      details: { kind: info.plural, name },
    });
  }
  try {
    return fastJsonPatch.applyPatch(structuredClone(base), patch as fastJsonPatch.Operation[], true, false).newDocument;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new StoreError('Invalid', `the JSON patch for ${info.kind} "${name}" could not be applied: ${msg}`, {
      details: { kind: info.plural, name },
      cause: err,
    });
  }
}

function notFound(info: KindInfo, name: string): StoreError {
  const res = info.group ? `${info.plural}.${info.group}` : info.plural;
  return new StoreError('NotFound', `${res} "${name}" not found`, { details: { kind: info.plural, name } });
}

function conflictError(info: KindInfo, name: string): StoreError {
  const res = info.group ? `${info.plural}.${info.group}` : info.plural;
  return new StoreError(
    'Conflict',
    `Operation cannot be fulfilled on ${res} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { details: { kind: info.plural, name } },
  );
}

function invalid(info: KindInfo, name: string, causes: { field: string; reason: string; message: string }[]): StoreError {
  const res = info.group ? `${info.plural}.${info.group}` : info.plural;
  const summary = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  return new StoreError('Invalid', `${info.kind} "${name}" is invalid: ${summary}`, {
    causes,
    details: { kind: res, name },
  });
}
