// A whole image, checked once before it is offered. A qcow2 whose L1 or L2 entries point past the end of the file
// (a download or upload cut short), are misaligned or otherwise corrupt, or whose compressed clusters do not inflate
// to a cluster, is refused here with the error the reader would raise on the first read of that cluster, instead of
// failing the reads of every volume built on it later. Raw images have nothing to decode: any bytes are a raw image.

import { detectFormat } from './inspect.js';
import { openQcow2Reader, type VerifyOptions } from './qcow2-reader.js';
import { openFileSource } from './source.js';

/** Checks the image at `path` (one read of each L2 table and of each compressed cluster); throws its ImageFormatError. */
export async function verifyImage(path: string, { signal, onProgress }: VerifyOptions = {}): Promise<void> {
  const source = await openFileSource(path, { signal });
  let owned = true;
  try {
    const first = new Uint8Array(Math.min(4, source.size));
    await source.read(first, 0);
    if (detectFormat(first) !== 'qcow2') return;
    const reader = await openQcow2Reader(source, { signal });
    owned = false; // the reader closes it
    try {
      await reader.verify({ signal, ...(onProgress ? { onProgress } : {}) });
    } finally {
      await reader.close();
    }
  } finally {
    if (owned) await source.close();
  }
}
