// The UI's pages, one per route.

export { BackingImages } from './BackingImages.js';
export { BackingImageDetail } from './BackingImageDetail.js';
export { Volumes } from './Volumes.js';
export { VolumeDetail } from './VolumeDetail.js';
export { Nodes } from './Nodes.js';
export { Settings } from './Settings.js';
export { Login } from './Login.js';
