// Transfers between this browser and the manager: resumable uploads, downloads.

export { forgetUpload, readRecords, startUpload, useUploadRecords, useUploads, type UploadJob, type UploadRecord } from './uploads.js';
export { downloadImage, downloadImages } from './downloads.js';
