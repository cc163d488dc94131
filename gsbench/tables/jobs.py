"""One run folder's work and the data it is given: what ``gsbench ablate`` runs and prints, and
the command ``gsbench report`` suggests for a missing cell.

A :class:`RunJob` is a run folder of a cell's recipe (or its smoke stand-in) and seed with what it
still needs: training (or resuming) and the evaluations its cells are scored from; a run
initialised from another run (``train.init_from``, :attr:`TrainingSpec.init_from`) comes
:attr:`~RunJob.after` that run's job, whose folder its train line names. Its command
lines are written by :func:`gsbench.commands.command_line` from the options the CLI defines.
:class:`DataRoots` says where the prepared data of each dataset is (``--data PATH`` for every
dataset, ``--data DATASET=PATH`` for one): a table may mix datasets (RANet Table 4: Cityscapes,
PASCAL Context and COCO-Stuff columns), and each job trains and evaluates on its cells' dataset.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from gsbench.commands import GSBENCH, command_line, evaluation_values, torchrun
from gsbench.engine.run_dir import is_finished, is_interrupted
from gsbench.evaluation.setting import EvalSetting
from gsbench.errors import GsbenchError
from gsbench.tables.registry import KNOWN_DATASETS
from gsbench.tables.runs import RunIndex, run_name
from gsbench.tables.smoke import TrainingSpec


@dataclass
class RunJob:
    """One run folder and what it still needs (what ``gsbench ablate`` plans; the report's
    command for a missing cell is the job that fills it)."""

    run_dir: Path
    spec: TrainingSpec
    seed: int
    action: str | None  # "train", "resume" or None (trained already)
    dataset: str | None = None  # the dataset of its cells: what it trains and is scored on
    evals: list[EvalSetting] = field(default_factory=list)  # evaluations still missing
    cells: list[str] = field(default_factory=list)  # the cells it fills ("row.column")
    #: the job of the run that initialises this one (``spec.init_from``): trained first
    after: RunJob | None = None

    @property
    def pending(self) -> bool:
        return self.action is not None or bool(self.evals)

    def _train_overrides(self) -> tuple[str, ...]:
        """The spec's overrides, then the seed when it is not the recipe's and the folder of
        the run that initialises this one."""
        sets = self.spec.overrides
        if self.seed != self.spec.resolved.seed:
            sets += (f"seed={self.seed}",)
        if self.spec.init_from is not None:
            if self.after is None:
                raise ValueError(f"{self.run_dir}: an initialised run's job needs the job it "
                                 "comes after")
            sets += (f"train.init_from={self.after.run_dir}",)
        return sets

    def commands(self, data: str, device: str = "cpu", nproc: int = 1, *, quiet: bool = False,
                 launcher: tuple[str, ...] | None = None) -> list[list[str]]:
        """The ``gsbench`` command lines (argument lists) of this job, in order: train or resume,
        then each missing evaluation, on ``data`` and ``device``. ``nproc`` > 1 trains under
        ``torchrun`` with that many processes (one GPU each); ``launcher`` starts every line
        instead (:func:`gsbench.commands.this_python`)."""
        common = {"data": data, "device": None if device == "cpu" else device, "quiet": quiet}
        out: list[list[str]] = []
        if self.action is not None:
            start = launcher or (torchrun(nproc) if nproc > 1 else GSBENCH)
            what = {"resume": True} if self.action == "resume" else \
                {"recipe": self.spec.recipe, "overrides": self._train_overrides()}
            out.append(command_line("train", launcher=start, **what, out=self.run_dir, **common))
        for setting in self.evals:
            out.append(command_line("eval", self.run_dir, launcher=launcher or GSBENCH,
                                    **evaluation_values(setting), **common))
        return out

    def shell_line(self, data: str, device: str = "cpu", nproc: int = 1) -> str:
        """:meth:`commands` as one shell line, ``train ... && eval ...``."""
        return " && ".join(shlex.join(words) for words in self.commands(data, device, nproc))


def existing_job(index: RunIndex, spec: TrainingSpec, seed: int,
                 dataset: str | None) -> RunJob | None:
    """The job of the run of ``spec`` and ``seed`` under ``index``, finished ones first
    (nothing to train) then interrupted ones (resume); None when there is none."""
    runs = sorted((r for r in index.runs_for(spec.resolved) if r.seed == seed),
                  key=lambda r: (not is_finished(r.path), str(r.path)))
    for run in runs:
        if is_finished(run.path):
            return RunJob(run.path, spec, seed, None, dataset)
        if is_interrupted(run.path):  # from its last checkpoint, or from iteration 0
            return RunJob(run.path, spec, seed, "resume", dataset)
    return None


def new_run_dir(runs_dir: Path, spec: TrainingSpec, seed: int) -> Path:
    """The folder a new run of ``spec`` and ``seed`` trains into: the spec's folder, with
    ``+seed=N`` for a seed other than the recipe's."""
    if seed == spec.resolved.seed:
        return runs_dir / spec.folder
    return runs_dir / run_name(spec.folder, (f"seed={seed}",))


# --- where each dataset's prepared data lives -----------------------------------------------------

_DATASET_KEY = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class DataRoots:
    """The prepared data of the datasets a table is scored on: ``default`` for every dataset
    (``--data PATH``) and ``by_dataset`` for single ones (``--data DATASET=PATH``, which wins)."""

    default: str | None = None
    by_dataset: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Iterable[str]) -> DataRoots:
        """From the ``--data`` values: at most one ``PATH`` and one ``DATASET=PATH`` per dataset
        (DATASET a key of :data:`~gsbench.tables.registry.KNOWN_DATASETS`). A value is read as
        ``DATASET=PATH`` when the part before its first ``=`` is a plain word; a path that holds
        a ``=`` can be given as ``./name=...``."""
        default, by_dataset = None, {}
        for value in values:
            key, sep, path = value.partition("=")
            if sep and _DATASET_KEY.fullmatch(key):
                if key not in KNOWN_DATASETS:
                    raise GsbenchError(f"--data {value}: unknown dataset {key!r} "
                                       f"(use one of {', '.join(KNOWN_DATASETS)})")
                if key in by_dataset:
                    raise GsbenchError(f"--data {key}=...: given twice")
                if not path:
                    raise GsbenchError(f"--data {value}: no path after {key}=")
                by_dataset[key] = path
            elif not value:
                raise GsbenchError("--data: empty path")
            elif default is not None:
                raise GsbenchError(f"--data {value}: a second path for every dataset (the first "
                                   f"is {default}); give DATASET=PATH for each dataset instead")
            else:
                default = value
        return cls(default, by_dataset)

    def root(self, dataset: str | None) -> str | None:
        """The root of ``dataset``, or None when none was given."""
        if dataset is not None and dataset in self.by_dataset:
            return self.by_dataset[dataset]
        return self.default

    def missing(self, jobs: Iterable[RunJob]) -> dict[str, list[str]]:
        """dataset -> the cells of ``jobs`` that are scored on it and have no root."""
        out: dict[str, list[str]] = {}
        for job in jobs:
            if self.root(job.dataset) is None:
                cells = out.setdefault(str(job.dataset), [])
                cells.extend(c for c in job.cells if c not in cells)
        return out

    def check(self, jobs: Iterable[RunJob], *, exist: bool = True) -> None:
        """A GsbenchError naming the datasets of ``jobs`` without a root (and their cells); with
        ``exist``, also for a root that is not a folder."""
        jobs = list(jobs)
        missing = self.missing(jobs)
        if missing:
            raise _no_root(missing)
        if exist:
            for dataset in dict.fromkeys(job.dataset for job in jobs):
                root = self.root(dataset)
                if not Path(root).is_dir():
                    raise GsbenchError(f"--data {root}: no such folder (the prepared {dataset} "
                                       "data)")

    def root_or_placeholder(self, dataset: str | None) -> str:
        """The root of ``dataset``, or ``<dataset data>`` when none was given."""
        root = self.root(dataset)
        return root if root is not None else placeholder_root(dataset)

    def for_job(self, job: RunJob, placeholder: bool = False) -> str:
        """The root of ``job``'s dataset; without one ``<dataset data>`` when ``placeholder``,
        else a GsbenchError."""
        root = self.root(job.dataset)
        if root is not None:
            return root
        if not placeholder:
            raise _no_root(self.missing([job]))
        return self.root_or_placeholder(job.dataset)


def _no_root(missing: dict[str, list[str]]) -> GsbenchError:
    parts = []
    for dataset, cells in missing.items():
        more = f" +{len(cells) - 3} more" if len(cells) > 3 else ""
        parts.append(f"{dataset} (cells {', '.join(cells[:3])}{more})")
    how = f"{next(iter(missing))}=PATH" if len(missing) == 1 else "DATASET=PATH for each"
    return GsbenchError(f"no --data for {'; '.join(parts)}: add --data {how} "
                        "(or one --data PATH for every dataset)")


def placeholder_root(dataset: str | None) -> str:
    """What a dry run prints for the data of a dataset that has no ``--data``."""
    return f"<{dataset} data>"


def data_roots(data: str | DataRoots) -> DataRoots:
    """``data`` as :class:`DataRoots` (one path serves every dataset)."""
    return data if isinstance(data, DataRoots) else DataRoots(default=data)


__all__ = ["DataRoots", "RunJob", "data_roots", "existing_job", "new_run_dir", "placeholder_root"]
