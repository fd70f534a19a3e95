// Opens the right ImageReader for a backing file: qcow2 when the file starts with the qcow2 magic, raw otherwise.

import { checkRawSize, detectFormat } from './inspect.js';
import type { ImageReader } from './image-reader.js';
import { openQcow2Reader, type Qcow2ReaderOptions } from './qcow2-reader.js';
import { RawReader } from './raw-reader.js';
import { openFileSource, type ByteSource } from './source.js';

export type OpenImageReaderOptions = Qcow2ReaderOptions;

/** Open the backing image at `path` for reading guest bytes. The caller must close() the reader. */
export async function openImageReader(path: string, options: OpenImageReaderOptions = {}): Promise<ImageReader> {
  const source = await openFileSource(path, options);
  try {
    return await openImageReaderOnSource(source, options);
  } catch (err) {
    await source.close();
    throw err;
  }
}

/**
 * Open a reader on an already open source (an in-memory image, for example). The reader takes ownership of the
 * source and closes it; if opening fails, the caller still owns it.
 */
export async function openImageReaderOnSource(source: ByteSource, options: OpenImageReaderOptions = {}): Promise<ImageReader> {
  const first = new Uint8Array(Math.min(4, source.size));
  await source.read(first, 0);
  options.signal?.throwIfAborted();
  if (detectFormat(first) === 'qcow2') return openQcow2Reader(source, options);
  checkRawSize(source.size);
  return new RawReader(source);
}
