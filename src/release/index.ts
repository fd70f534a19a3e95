// Releases (issue 12): what a Stratum version runs its data plane on — default images of the backing-image
// manager, the instance manager and the engine, their versions and API ranges — and the checks that refuse a
// release that cannot be applied to a running cluster, before anything changes. The manager applies a release
// (src/manager/upgrade.ts); `stratum upgrade` sends one, `stratum version` shows what runs.

export { ReleaseError, isReleaseError, type ReleaseErrorCode } from './errors.js';
export { BUILTIN_RELEASE, COMPONENT_NAMES, RELEASE_COMPONENTS, isComponent, parseRelease, releaseCatalog, type ApiRange, type Release, type ReleaseComponent } from './release.js';
export { KNOWN_COMPONENTS, missingProgram, overlaps, validateRelease, type RunningInstance, type ValidateOptions } from './validate.js';
export { RELEASE_TUNABLE_ENV, untrustedProblems } from './trust.js';
