"""A PyTorch dataset over one split of a prepared dataset (see :mod:`gsbench.data.manifest`).

Items are dictionaries::

    {"image": float32 3xHxW (ImageNet-normalised), "label": int64 HxW (trainIds, 255 = ignore),
     "edge": float32 HxW 0/1 (only when the manifest has edge maps), "stem": str}

Augmentation randomness comes from a generator seeded by ``(seed, epoch, index)`` (see
:meth:`SegmentationDataset.generator`), so an item is the same whichever worker loads it, in
whatever order, in one process or under torchrun; :meth:`set_epoch` changes it per epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from gsbench.data.labels import IGNORE_INDEX
from gsbench.data.manifest import Manifest
from gsbench.data.transforms import Compose, Pair, eval_transform
from gsbench.errors import GsbenchError
from gsbench.io import read_label, read_rgb


class SegmentationDataset(Dataset):
    """Images, trainId labels and (when prepared) edge maps of ``manifest``'s ``split``."""

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        transform: Compose | None = None,
        seed: int = 0,
        with_edges: bool = True,
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

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation draws of ``epoch`` (call before creating the loader iterator)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        """The augmentation generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
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
        pair = self.transform(Pair(image, label, edge), self.generator(index))
        item = {"image": pair.image, "stem": sample.stem}
        if pair.label is not None:
            item["label"] = torch.from_numpy(pair.label.astype(np.int64))
        else:
            item["label"] = torch.full(pair.image.shape[-2:], IGNORE_INDEX, dtype=torch.int64)
        if pair.edge is not None:
            item["edge"] = torch.from_numpy(pair.edge.astype(np.float32))
        return item
