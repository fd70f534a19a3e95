// Downloads to this computer. The API wants the token in a header, which a plain link cannot send, so the file
// is fetched and handed to the browser as a blob (it is held in memory until saved).
// TODO(#14): a short-lived download token in the URL would let the browser stream large images to disk.

import { apiFetch } from '../api/index.js';

export async function downloadImage(name: string): Promise<void> {
  const res = await apiFetch(`/v1/backingimages/${encodeURIComponent(name)}/download`);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** One after another, so several large images do not compete for memory. Returns the failures by name. */
export async function downloadImages(names: string[]): Promise<Map<string, string>> {
  const failed = new Map<string, string>();
  for (const n of names) {
    try {
      await downloadImage(n);
    } catch (err) {
      failed.set(n, err instanceof Error ? err.message : String(err));
    }
  }
  return failed;
}
