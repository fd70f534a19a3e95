// The last step of every source: the SHA-512 (already computed as the bytes arrived, on the hashing thread) against
// the expected one, the format through imagefmt (no backing file, no external data file, sizes in whole sectors,
// every qcow2 table entry inside the file, every compressed cluster inflating), then fsync and rename to the final
// name, with the chunk manifest built in the same pass left beside it for the manager. A file that fails here is
// removed with its work directory: it is wrong, not merely incomplete.

import { formatManifestAnchor } from '../api/backing-image.js';
import { manifestDigest } from '../bim/index.js';
import { inspectImage, isImageFormatError, verifyImage } from '../imagefmt/index.js';
import { DataSourceError } from './errors.js';
import type { CompleteInfo, WorkFile } from './workfile.js';

export async function verifyAndSeal(
  file: WorkFile,
  ids: { name: string; uuid: string },
  expected: string | undefined,
  { signal, onProgress }: { signal: AbortSignal; onProgress?: () => void },
): Promise<CompleteInfo> {
  await file.ensureHash({ signal });
  const checksum = await file.digest();
  if (expected !== undefined && checksum !== expected) {
    await file.removeAll();
    throw new DataSourceError('ChecksumMismatch', `expected sha512 ${expected} but the file has ${checksum}`);
  }
  if (file.offset === 0) {
    await file.removeAll();
    throw new DataSourceError('ImageRefused', 'the file is empty');
  }
  let format: string;
  let virtualSize: number;
  try {
    ({ format, virtualSize } = await inspectImage(file.partPath, { signal }));
    // Reading every table (and inflating every compressed cluster) of a large image takes a while: it counts as progress.
    await verifyImage(file.partPath, { signal, ...(onProgress ? { onProgress } : {}) });
  } catch (err) {
    if (!isImageFormatError(err)) throw err;
    await file.removeAll();
    throw new DataSourceError('ImageRefused', `the file is not a usable backing image: ${err.message}`, { cause: err });
  }
  const manifest = await file.manifest({ ...ids, sha512: checksum });
  const identity = await file.finish({ signal });
  // Without it the manager reads the file once when the first peer asks; not a reason to fail a good file.
  await file.saveManifest(identity, manifest).catch(() => undefined);
  // The manifest's digest is the anchor receivers verify chunks against: it describes the very bytes that hashed to
  // the checksum (one pass), so a chunk matching it is a chunk of this file.
  const chunkManifestDigest = formatManifestAnchor({ chunkSize: manifest.chunkSize, digest: manifestDigest(manifest).toString('hex') });
  const complete: CompleteInfo = { checksum, size: identity.size, format, virtualSize, identity, chunkManifestDigest };
  file.patch({ complete });
  await file.persist();
  return complete;
}
