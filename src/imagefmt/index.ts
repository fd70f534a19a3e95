// imagefmt: the backing-image file formats, qcow2 and raw. Detects and inspects an image, refuses what cannot be a
// self-contained read-only base (backing files, external data files, encryption, zstd, corrupt or odd-sized
// images), and reads its guest-visible bytes with bounded memory for the replica data path. Writing is not here yet.

export { IMAGE_FORMAT_ERROR_CODES, ImageFormatError, isImageFormatError } from './errors.js';
export type { ImageFormatErrorCode, ImageFormatErrorOptions } from './errors.js';

export { checkQcow2Layout, parseQcow2Header, QCOW2_MAGIC } from './qcow2-header.js';
export type { Qcow2Bitmaps, Qcow2FeatureName, Qcow2Header, Qcow2HeaderExtension } from './qcow2-header.js';

export { detectFormat, inspectImage, inspectSource } from './inspect.js';
export { verifyImage } from './verify-image.js';
export type { ImageInfo, Qcow2Info } from './inspect.js';

export type { ImageExtent, ImageFormat, ImageReader, ZeroExtentsOptions } from './image-reader.js';
export { openImageReader, openImageReaderOnSource } from './reader.js';
export type { OpenImageReaderOptions } from './reader.js';
export { DEFAULT_CLUSTER_CACHE_BYTES, DEFAULT_L2_CACHE_BYTES } from './qcow2-reader.js';
export type { Qcow2ImageReader } from './qcow2-reader.js';

export { bufferSource, openFileSource } from './source.js';
export type { ByteSource, SignalOptions } from './source.js';
