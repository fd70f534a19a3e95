// datasource: the process that prepares a backing image's first file on one disk (download over http/https with
// Range resume, or a resumable streamed upload), computing its SHA-512 in the same pass, verifying it and its format,
// and handing the finished file to the disk's backing-image manager. API: docs/datasource-api.md.

export { DataSource } from './service.js';
export type { ChangeKind, DataSourceOptions, FileInfo, SourceType } from './service.js';
export { serveDataSource } from './server.js';
export type { DataSourceServer, ServeOptions } from './server.js';
export { DATA_SOURCE_STATES, DEFAULT_TIMEOUTS } from './file-state.js';
export type { DataSourceState, StateTimeouts } from './file-state.js';
export { DataSourceError, httpStatusOf, isDataSourceError } from './errors.js';
export type { DataSourceErrorCode } from './errors.js';
export { parseHeaderText, readHeaderFile } from './request-headers.js';
export type { RequestHeaders } from './request-headers.js';
export { normaliseChecksum, parseParameters, redactParameters, redactUrl, validatePathPart, validateSourceUrl } from './source-url.js';
export type { FileIdentity } from './workfile.js';
