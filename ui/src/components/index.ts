// Small shared pieces of the UI.

export { ErrorAlert } from './ErrorAlert.js';
export { DiskMap, copyEntries } from './DiskMap.js';
export { useDisks, diskLabel, type DiskRef } from './disks.js';
export { SortHeader, useSort, type SortState } from './SortHeader.js';
export { Confirm } from './Confirm.js';
export { useNow } from './now.js';
export { useAction } from './action.js';
