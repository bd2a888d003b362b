"""Slices in, multi-crop samples out: sources, the pretraining dataset, and the sharded sampler.

The sampler walks one global stream of samples: iteration `it` takes positions
[it * G, (it + 1) * G) of an epoch-wise permutation of the corpus (G = global batch size), and
rank r takes its contiguous share of those positions. The DataLoader hands whole batches to its
workers in turn, which shards the work across workers too. A sample's crops, masks and the
iteration's resolution are seeded by (seed, iteration, position), so the data a rank sees
depends neither on the number of workers nor on restarts.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from meddinov3.pretrain.augment import CropSizes, CTMultiCrop
from meddinov3.pretrain.config import PretrainConfig
from meddinov3.pretrain.masking import block_mask, mask_ratio_for_slot
from meddinov3.pretrain.procedural_slices import SyntheticSlices

SampleKey = tuple[int, int, int]  # corpus index, iteration, position in the global batch
BUNDLED_SLICE = "ct_slice_1866889.npy"

# Distinct streams derived from the same (seed, iteration): sizes, mask plan.
_STREAM_SIZES = 1
_STREAM_MASK_PLAN = 2


class SliceSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def seeded_generator(*words: int) -> torch.Generator:
    """A generator whose seed mixes all `words` (SeedSequence avoids correlated nearby seeds)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class BundledSlice:
    """The real CT-3M slice shipped with the package, as a one-slice source."""

    def __init__(self) -> None:
        path = resources.files("meddinov3") / "assets" / BUNDLED_SLICE
        self.slice = np.load(str(path), allow_pickle=False)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> np.ndarray:
        if index != 0:
            raise IndexError(f"the bundled slice source has one slice, asked for {index}")
        return self.slice


class ConcatSlices:
    """Several slice sources seen as one indexable corpus."""

    def __init__(self, sources: Sequence[tuple[str, SliceSource]]):
        self.sources = [(name, source) for name, source in sources if len(source) > 0]
        if not self.sources:
            raise ValueError("the pretraining corpus is empty: every configured source has zero slices")
        self.offsets = np.cumsum([0] + [len(source) for _, source in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> torch.Tensor:
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        name, source = self.sources[which]
        array = np.asarray(source[index - int(self.offsets[which])])
        if array.ndim != 2:
            raise ValueError(f"{name}: slice {index - int(self.offsets[which])} has shape {array.shape}, expected (H, W)")
        return torch.from_numpy(array.astype(np.float32, copy=False))


def build_corpus(config: PretrainConfig) -> ConcatSlices:
    if not (config.data.corpus or config.data.bundled_slice or config.data.synthetic_slices > 0):
        raise ValueError("no training data: set data.corpus, data.bundled_slice or data.synthetic_slices")
    sources: list[tuple[str, SliceSource]] = []
    if config.data.corpus:
        from meddinov3.curate import SliceCorpus

        sources.append((f"corpus {config.data.corpus}", SliceCorpus(config.data.corpus)))
    if config.data.bundled_slice:
        sources.append(("bundled slice", BundledSlice()))
    if config.data.synthetic_slices > 0:
        sources.append(("synthetic", SyntheticSlices(config.data.synthetic_slices, seed=config.data.seed)))
    return ConcatSlices(sources)


def crop_sizes_at(config: PretrainConfig, iteration: int) -> CropSizes:
    """The resolution option of an iteration (stage 3 mixes several), the same on every rank."""
    crops = config.crops
    n_options = len(crops.global_sizes)
    if n_options == 1:
        choice = 0
    else:
        probs = torch.tensor(crops.size_probs or [1.0] * n_options, dtype=torch.float64)
        generator = seeded_generator(config.data.seed, iteration, _STREAM_SIZES)
        choice = int(torch.multinomial(probs, 1, generator=generator))
    gram = crops.gram_sizes[choice] if config.gram.enabled else None
    return CropSizes(crops.global_sizes[choice], crops.local_sizes[choice], gram)


class PretrainDataset(Dataset):
    """Indexed by SampleKey; returns crops, masks and the corpus index of one sample."""

    def __init__(self, corpus: ConcatSlices, config: PretrainConfig, patch_size: int):
        self.corpus = corpus
        self.config = config
        self.patch_size = patch_size
        self.multicrop = CTMultiCrop(config.crops, config.intensity)

    def __len__(self) -> int:
        return len(self.corpus)

    def _masks(self, iteration: int, position: int, grid: int, generator: torch.Generator) -> torch.Tensor:
        cfg = self.config.masking
        global_batch = self.config.optim.global_batch_size
        n_global = len(self.config.intensity.blur_prob_global)
        masks = []
        for crop in range(n_global):
            plan = seeded_generator(self.config.data.seed, iteration, _STREAM_MASK_PLAN)
            slot = crop * global_batch + position
            ratio = mask_ratio_for_slot(slot, n_global * global_batch, plan, generator, cfg.probability, cfg.ratio_range)
            n_masked = int(grid * grid * ratio)
            mask = block_mask((grid, grid), n_masked, generator, cfg.min_block, cfg.max_fraction)
            masks.append(mask.flatten())
        return torch.stack(masks)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        index, iteration, position = key
        sizes = crop_sizes_at(self.config, iteration)
        if sizes.global_size % self.patch_size:
            raise ValueError(f"global crop size {sizes.global_size} is not a multiple of the patch size {self.patch_size}")
        generator = seeded_generator(self.config.data.seed, iteration, position, index)
        sample = self.multicrop(self.corpus[index], sizes, generator)
        sample["masks"] = self._masks(iteration, position, sizes.global_size // self.patch_size, generator)
        sample["index"] = index
        return sample


@lru_cache(maxsize=2)
def _epoch_permutation(n_samples: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n_samples, generator=seeded_generator(seed, epoch))


class ShardedBatchSampler(Sampler[list[SampleKey]]):
    """This rank's share of every global batch from `start_iteration` to `end_iteration`."""

    def __init__(
        self,
        n_samples: int,
        global_batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start_iteration: int,
        end_iteration: int,
    ):
        if global_batch_size % world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by {world_size} processes")
        self.n_samples = n_samples
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.rank = rank
        self.seed = seed
        self.start_iteration = start_iteration
        self.end_iteration = end_iteration

    def __len__(self) -> int:
        return max(self.end_iteration - self.start_iteration, 0)

    def corpus_index(self, stream_position: int) -> int:
        epoch, offset = divmod(stream_position, self.n_samples)
        return int(_epoch_permutation(self.n_samples, self.seed, epoch)[offset])

    def batch_at(self, iteration: int) -> list[SampleKey]:
        first = self.rank * self.local_batch_size
        positions = range(first, first + self.local_batch_size)
        base = iteration * self.global_batch_size
        return [(self.corpus_index(base + p), iteration, p) for p in positions]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for iteration in range(self.start_iteration, self.end_iteration):
            yield self.batch_at(iteration)
