"""The manifest of a prepared dataset: which images, labels and edge maps make up each split.

``prepare-data`` writes ``manifest.json`` into the prepared folder; training, evaluation and the
tables read only the manifest, never the raw layout. Every path in it is POSIX and relative to
the manifest's folder, so a prepared folder can be moved together with its raw data.

    {
      "format": "gsbench-manifest/1",
      "dataset": "cityscapes",       # or ade20k, voc2012, pascal_context, coco_stuff,
                                     # coco_stuff10k
      "num_classes": 19,
      "class_names": ["road", ...],
      "ignore_index": 255,
      "splits": {
        "val": [
          {"stem": "frankfurt_000000_000294",          # the key predictions are matched by
           "image": "../leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
           "label": "labels/val/frankfurt/frankfurt_000000_000294_trainIds.png",   # uint8 trainIds
           "edge": "edges/val/frankfurt/frankfurt_000000_000294_edge.png",          # uint8 0/1
           "instance": "../gtFine/val/frankfurt/..._gtFine_instanceIds.png",        # or null
           "height": 1024, "width": 2048,
           "sha256": {"image": "...", "label": "...", "edge": "...", "instance": "..."}},
          ...
        ]
      }
    }

Wherever a split is named, ``a+b`` means the splits ``a`` and ``b`` one after the other (see
:meth:`Manifest.split`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gsbench.errors import GsbenchError
from gsbench.io import atomic_write_json, read_json, sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gsbench-manifest/1"
#: Joins split names into a union: ``train+val`` is train followed by val (:meth:`Manifest.split`).
SPLIT_UNION = "+"
#: Name of the prepared folder that ``prepare-data`` creates inside a raw dataset root by default.
DEFAULT_PREPARED_DIRNAME = "gsbench"


@dataclass(frozen=True)
class Sample:
    """One image of a split. Paths are relative to the manifest's folder (see :class:`Manifest`)."""

    stem: str
    image: str
    label: str | None  # None for splits without ground truth (Cityscapes test)
    edge: str | None
    instance: str | None
    height: int
    width: int
    sha256: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    dataset: str
    num_classes: int
    class_names: list[str]
    ignore_index: int
    splits: dict[str, list[Sample]]
    root: Path = Path(".")  # the folder holding manifest.json; not serialised

    def path(self, relative: str) -> Path:
        """Absolute path of a file named in the manifest."""
        return (self.root / relative).resolve()

    def verify(self, samples: list[Sample], kinds: tuple[str, ...]) -> None:
        """Check the files of ``kinds`` (``"image"``, ``"label"``, ``"instance"`` ...) of each
        sample against the sha256 sums ``prepare-data`` recorded (a sample without such a file,
        e.g. no instance map, is skipped): a one-line error names the first file that changed
        (or has no recorded sum)."""
        for sample in samples:
            for kind in kinds:
                relative = getattr(sample, kind)
                if relative is None:
                    continue
                path = self.path(relative)
                recorded = sample.sha256.get(kind)
                if recorded is None:
                    raise GsbenchError(f"{self.root / MANIFEST_NAME}: no sha256 recorded for the "
                                       f"{kind} of {sample.stem}; prepare the dataset again")
                if not path.is_file():
                    raise GsbenchError(f"{path}: file not found (the {kind} of {sample.stem})")
                if sha256_file(path) != recorded:
                    raise GsbenchError(f"{path}: sha256 differs from the one prepare-data recorded "
                                       f"in {self.root / MANIFEST_NAME} (the {kind} of "
                                       f"{sample.stem} changed since)")

    def split(self, name: str) -> list[Sample]:
        """The samples of the split ``name``, or of a union of splits.

        ``a+b+c`` is the concatenation of the splits ``a``, ``b`` and ``c`` in that order,
        wherever a split is named (recipe ``data.train_split``/``val_split``, ``gsbench eval
        --split``): ``train+val`` is the papers' "train on train + val, submit test" protocol
        (GFF Table 5, PSANet Table 6, RANet Table 5, GPSNet Table 2), ``train+val+train_extra``
        adds the Cityscapes coarse set. A part may appear once, and the parts may not share an
        image (a stem), so that no sample is trained on or scored twice.
        """
        if name in self.splits:
            return self.splits[name]
        where = self.root / MANIFEST_NAME
        known = ", ".join(sorted(self.splits)) or "none"
        if SPLIT_UNION not in name:
            raise GsbenchError(f"{where}: no split {name!r} (has: {known})")
        parts = name.split(SPLIT_UNION)
        for part in parts:
            if part not in self.splits:
                raise GsbenchError(f"{where}: no split {part!r} in {name!r} (has: {known})")
        if repeated := sorted({part for part in parts if parts.count(part) > 1}):
            raise GsbenchError(f"{where}: split union {name!r} names {repeated[0]!r} twice")
        samples: list[Sample] = []
        owner: dict[str, str] = {}
        for part in parts:
            for sample in self.splits[part]:
                if (first := owner.setdefault(sample.stem, part)) != part:
                    raise GsbenchError(
                        f"{where}: split union {name!r}: {sample.stem!r} is in both {first!r} "
                        f"and {part!r}"
                    )
            samples.extend(self.splits[part])
        return samples

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "dataset": self.dataset,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "ignore_index": self.ignore_index,
            "splits": {name: [asdict(s) for s in samples] for name, samples in self.splits.items()},
        }

    def save(self, root: str | os.PathLike | None = None) -> Path:
        """Write ``manifest.json`` atomically into ``root`` (default: ``self.root``)."""
        if root is not None:
            self.root = Path(root)
        target = Path(self.root) / MANIFEST_NAME
        atomic_write_json(target, self.to_json())
        return target

    @classmethod
    def load(cls, prepared: str | os.PathLike) -> Manifest:
        """Load the manifest of a prepared folder (or of a raw root, see :func:`find_prepared`)."""
        root = find_prepared(prepared)
        file = root / MANIFEST_NAME
        data = read_json(file)
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise GsbenchError(f"{file}: not a gsbench manifest (format must be {MANIFEST_FORMAT!r})")
        try:
            splits = {
                name: [Sample(**entry) for entry in entries]
                for name, entries in data["splits"].items()
            }
            return cls(
                dataset=data["dataset"],
                num_classes=int(data["num_classes"]),
                class_names=list(data["class_names"]),
                ignore_index=int(data["ignore_index"]),
                splits=splits,
                root=root.resolve(),
            )
        except (KeyError, TypeError) as exc:
            raise GsbenchError(f"{file}: malformed manifest ({exc})") from None


def find_prepared(path: str | os.PathLike) -> Path:
    """The prepared folder for ``path``: ``path`` itself if it holds a manifest, else
    ``path/gsbench`` (the default output of ``prepare-data`` inside a raw dataset root)."""
    path = Path(path).expanduser()
    if (path / MANIFEST_NAME).is_file():
        return path
    if (path / DEFAULT_PREPARED_DIRNAME / MANIFEST_NAME).is_file():
        return path / DEFAULT_PREPARED_DIRNAME
    if not path.exists():
        raise GsbenchError(f"{path}: no such folder")
    raise GsbenchError(
        f"{path}: no {MANIFEST_NAME} here or in {DEFAULT_PREPARED_DIRNAME}/ "
        "(run `gsbench prepare-data` first)"
    )
