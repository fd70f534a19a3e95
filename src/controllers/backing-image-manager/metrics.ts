// Prometheus gauges of backing-image copies, one series per (image, node, disk), computed when /metrics is scraped
// from the managers' statuses in the informer cache: nothing is kept up to date per event, and a copy that goes away
// leaves no stale series behind.
//
//   longhorn_backing_image_actual_size_bytes                   bytes the copy takes on its disk
//   longhorn_backing_image_state{state}                        1 for the copy's state, 0 for the others
//   stratum_backing_image_copy_verified_timestamp_seconds      when every byte was last checked against the
//                                                              checksum (ready copies; alert when it grows old)

import { Gauge, type Registry } from 'prom-client';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';

const STATES = ['pending', 'starting', 'in-progress', 'ready', 'failed', 'unknown'] as const;
const LABELS = ['backing_image', 'node', 'disk'] as const;
const NAMES = ['longhorn_backing_image_actual_size_bytes', 'longhorn_backing_image_state', 'stratum_backing_image_copy_verified_timestamp_seconds'] as const;

/** Registers the gauges on `registry` (replacing earlier ones); returns what removes them again. */
export function registerBackingImageMetrics(registry: Registry, informers: InformerFactory): () => void {
  const bims = informers.informerFor<BackingImageManager>('BackingImageManager');
  const copies = function* () {
    for (const m of bims.list()) {
      for (const [name, f] of Object.entries(m.status?.backingImageFileMap ?? {})) {
        yield { labels: { backing_image: name, node: m.spec?.nodeID ?? '', disk: m.spec?.diskUUID ?? '' }, f };
      }
    }
  };
  const gauges = [
    new Gauge({
      name: NAMES[0],
      help: 'Bytes a backing image copy takes on its disk',
      labelNames: LABELS,
      registers: [],
      collect() {
        this.reset();
        for (const { labels, f } of copies()) this.set(labels, f.realSize ?? 0);
      },
    }),
    new Gauge({
      name: NAMES[1],
      help: `State of a backing image copy: 1 for its state, 0 for the others (${STATES.join(', ')})`,
      labelNames: [...LABELS, 'state'],
      registers: [],
      collect() {
        this.reset();
        for (const { labels, f } of copies()) for (const s of STATES) this.set({ ...labels, state: s }, f.state === s ? 1 : 0);
      },
    }),
    new Gauge({
      name: NAMES[2],
      help: 'When every byte of a ready backing image copy was last read and found to hash to its checksum (Unix time)',
      labelNames: LABELS,
      registers: [],
      collect() {
        this.reset();
        for (const { labels, f } of copies()) {
          const at = Date.parse(f.verifiedAt ?? '');
          if (f.state === 'ready' && !Number.isNaN(at)) this.set(labels, at / 1000);
        }
      },
    }),
  ];
  gauges.forEach((g, i) => {
    registry.removeSingleMetric(NAMES[i]!);
    registry.registerMetric(g);
  });
  return () => NAMES.forEach((name, i) => registry.getSingleMetric(name) === gauges[i] && registry.removeSingleMetric(name));
}
