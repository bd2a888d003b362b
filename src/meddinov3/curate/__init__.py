"""Build a CT-3M-style pretraining corpus: every axial CT slice at a fixed in-plane geometry.

Pipeline (one source volume at a time, in parallel worker processes):

    sources.discover  ->  reading.read_volume  ->  screening.reject_reason
                      ->  slices.volume_to_slices  ->  shards.ShardStore.commit

The result is read back with :class:`SliceCorpus` (see ``corpus.py``), the loader API that the
pretraining data pipeline uses.
"""

from meddinov3.curate.config import CurateConfig
from meddinov3.curate.corpus import SliceCorpus, VolumeRecord

__all__ = ["CurateConfig", "SliceCorpus", "VolumeRecord"]
