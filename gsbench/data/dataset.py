"""A PyTorch dataset over one split of a prepared dataset (see :mod:`gsbench.data.manifest`).

Items are dictionaries::

    {"image": float32 3xHxW (ImageNet-normalised), "label": int64 HxW (trainIds, 255 = ignore),
     "edge": float32 HxW 0/1 (only when the manifest has edge maps), "stem": str}

Augmentation randomness comes from a generator seeded by ``(seed, epoch, index)`` (see
:meth:`SegmentationDataset.generator`), so an item is the same whichever worker loads it, in
whatever order, in one process or under torchrun; :meth:`set_epoch` changes it per epoch. A
key ``(epoch, index)`` names the epoch with the item, which is how the training loader's
long-lived workers (:class:`EpochStream`) see every epoch without being restarted.

With ``class_uniform = p > 0`` (recipe ``data.class_uniform``) a fraction ``p`` of each epoch's
positions load an image chosen for a class and crop around that class (Gated-SCNN's class-uniform
sampling, :mod:`gsbench.data.uniform`); the plan comes from ``(seed, epoch)`` alone, so the same
holds. ``p = 0`` draws nothing extra: items are exactly those of a dataset without the option.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import Manifest
from gsbench.data.transforms import Compose, Pair, eval_transform
from gsbench.data.uniform import (
    ClassPixelIndex, EpochPlan, build_class_index, class_anchor, plan_epoch,
)
from gsbench.errors import GsbenchError
from gsbench.io import read_label, read_rgb


#: Spawn key of the epoch-plan generator, apart from the per-item generators' seeds.
_PLAN_STREAM = 1


#: A split whose decoded images, labels and edge maps fit in this many bytes is decoded once
#: per process and kept (a synthetic or small dataset: its items then cost their augmentation
#: only); larger splits are decoded item by item.
DECODE_CACHE_BYTES = 256 << 20


class SegmentationDataset(Dataset):
    """Images, trainId labels and (when prepared) edge maps of ``manifest``'s ``split``; the
    edge maps are read only with ``with_edges`` (the training engine passes it for the losses
    that read them).

    ``class_uniform`` is the class-uniform fraction (0 disables it); ``class_index`` the split's
    :class:`~gsbench.data.uniform.ClassPixelIndex` when the caller has it already (it is built,
    or read from its cache, otherwise).
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        transform: Compose | None = None,
        seed: int = 0,
        with_edges: bool = True,
        class_uniform: float = 0.0,
        class_index: ClassPixelIndex | None = None,
    ):
        self.manifest = manifest
        self.split = split
        self.samples = manifest.split(split)
        if not self.samples:
            raise GsbenchError(f"{manifest.root}: split {split!r} has no images")
        self.transform = transform if transform is not None else eval_transform()
        self.seed = int(seed)
        self.epoch = 0
        # edges are returned only when every sample of the split has them (a batch needs all)
        self.has_edges = with_edges and all(s.edge for s in self.samples)
        if not 0.0 <= class_uniform <= 1.0:
            raise GsbenchError(f"data.class_uniform must be in [0, 1], got {class_uniform}")
        self.class_uniform = float(class_uniform)
        self._kept: dict[int, tuple] = {}
        self._keep: bool | None = None
        self._kept_bytes, self._budget = 0, DECODE_CACHE_BYTES
        self.class_index: ClassPixelIndex | None = None
        self._plans: dict[int, EpochPlan] = {}  # the class-uniform plan of the latest epoch
        if self.class_uniform > 0:
            if class_index is None:
                class_index = build_class_index(manifest, split)
            self.class_index = class_index
            expected = (len(self.samples), manifest.num_classes)
            if self.class_index.counts.shape != expected:
                raise GsbenchError(
                    f"{manifest.root}: class index of split {split!r} has shape "
                    f"{self.class_index.counts.shape}, expected {expected}"
                )
            if self.class_index.present.size == 0:
                raise GsbenchError(
                    f"{manifest.root}: split {split!r} has no labelled pixel of any class, so "
                    "data.class_uniform has no class to sample"
                )
            self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation draws (and class-uniform plan) of ``epoch`` for plain integer
        keys; call it before creating the loader iterator, so that the workers get them."""
        self.epoch = int(epoch)
        self._plan(self.epoch)

    def _plan(self, epoch: int) -> EpochPlan | None:
        """The class-uniform plan of ``epoch`` (None without class-uniform sampling), a function
        of ``(seed, epoch)`` alone, computed once per epoch in each process."""
        if self.class_index is None:
            return None
        if epoch not in self._plans:
            stream = np.random.SeedSequence([self.seed, epoch], spawn_key=(_PLAN_STREAM,))
            self._plans = {epoch: plan_epoch(self.class_index, self.class_uniform,
                                             np.random.default_rng(stream))}
        return self._plans[epoch]

    def crop_source(self, index: int, epoch: int | None = None) -> tuple[int, int | None]:
        """The sample that item ``index`` loads in ``epoch`` (default: the current one), and the
        class its crop is centred on (None: an ordinary random crop of sample ``index``)."""
        plan = self._plan(self.epoch if epoch is None else epoch)
        if plan is None or plan.classes[index] < 0:
            return index, None
        return int(plan.images[index]), int(plan.classes[index])

    def generator(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The augmentation generator of item ``index`` in ``epoch`` (default: the current one)."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def _decoded(self, source: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Image, label and edge map of sample ``source``, decoded, or kept from an earlier
        decoding when the whole split fits in :data:`DECODE_CACHE_BYTES` (in each process: a
        loader worker keeps its own). Kept arrays are read-only, so that no transform can
        change them for the next epoch."""
        kept = self._kept.get(source)
        if kept is not None:
            return kept
        sample = self.samples[source]
        image = read_rgb(self.manifest.path(sample.image))
        label = edge = None
        if sample.label is not None:
            label = read_label(self.manifest.path(sample.label))
            if label.dtype != np.uint8:
                raise GsbenchError(f"{self.manifest.path(sample.label)}: trainId labels must be uint8, got {label.dtype}")
            if label.shape != image.shape[:2]:
                raise GsbenchError(
                    f"{self.manifest.path(sample.label)}: label shape {label.shape} does not match "
                    f"image shape {image.shape[:2]}"
                )
        if self.has_edges:
            edge = read_label(self.manifest.path(sample.edge)).astype(np.uint8)
        arrays = (image, label, edge)
        size = sum(a.nbytes for a in arrays if a is not None)
        if self._keep is None:  # decide once, from the first item's size
            self._keep = size * len(self.samples) <= self._budget
        # the running total holds the bound where later images are larger than the first
        if self._keep and self._kept_bytes + size <= self._budget:
            for array in arrays:
                if array is not None:
                    array.setflags(write=False)
            self._kept[source] = arrays
            self._kept_bytes += size
        return arrays

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        source, class_id = self.crop_source(index, epoch)
        sample = self.samples[source]
        image, label, edge = self._decoded(source)
        rng = self.generator(index, epoch)
        anchor = None
        if class_id is not None:
            anchor = class_anchor(label, class_id, rng, self.manifest.path(sample.label))
        pair = self.transform(Pair(image, label, edge, anchor), rng)
        item = {"image": pair.image, "stem": sample.stem}
        if pair.label is not None:
            self._check_label_values(pair.label, sample.label)
            item["label"] = torch.from_numpy(pair.label.astype(np.int64))
        else:
            item["label"] = torch.full(pair.image.shape[-2:], IGNORE_INDEX, dtype=torch.int64)
        if pair.edge is not None:
            item["edge"] = torch.from_numpy(pair.edge.astype(np.float32))
        return item

    def _check_label_values(self, label: np.ndarray, name: str) -> None:
        """Every value of an item's label is a trainId of the dataset or the ignore index: checked
        here, on the host, so that the loss need not stop the device to check it."""
        num_classes = self.manifest.num_classes
        bad = (label >= num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            raise GsbenchError(
                f"{self.manifest.path(name)}: label value {int(label[bad][0])} is not a trainId "
                f"in 0..{num_classes - 1} nor the ignore index {IGNORE_INDEX}"
            )


class EpochStream(Sampler):
    """The training order as one endless stream of ``(epoch, index)`` keys, from ``epoch`` and
    ``start`` samples into it on: each epoch is ``sampler``'s order for that epoch (a
    :class:`~torch.utils.data.DistributedSampler`, fixed by seed and epoch) cut to
    ``samples_per_epoch`` keys (whole batches), so that one loader iterator, and its workers,
    serve the whole run and a resumed run continues exactly where the interrupted one was."""

    def __init__(self, sampler: DistributedSampler, samples_per_epoch: int, epoch: int = 0,
                 start: int = 0):
        self.sampler = sampler
        self.samples_per_epoch = int(samples_per_epoch)
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self.start
        while True:
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)[start:self.samples_per_epoch]
            yield from ((epoch, index) for index in order)
            epoch, start = epoch + 1, 0
