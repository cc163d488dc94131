"""Which metrics an evaluation computes: :class:`MetricsConfig`, its defaults and its options.

Scoring a folder of predictions (:mod:`.pred_dir`) and scoring a model (:mod:`.model`) build
their accumulator from the same :meth:`MetricsConfig.for_dataset`, so ``gsbench eval --pred-dir``
and ``gsbench eval RUN`` agree on every default: boundary F at the radii of Gated-SCNN Table 2
(:data:`gsbench.metrics.boundary.DEFAULT_RADII`: 3, 5, 9, 12 px) under the ``"gscnn"``
convention, and the distance-based crops of Gated-SCNN Fig. 3-5
(:data:`gsbench.metrics.crops.DEFAULT_CROP_FACTORS`: 0..400 px) on Cityscapes only
(:func:`default_crop_factors`). The constants themselves belong to the metrics they configure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gsbench.data.manifest import Manifest
from gsbench.data.registry import DATASETS
from gsbench.errors import GsbenchError
from gsbench.metrics.boundary import CONVENTIONS, DEFAULT_RADII
from gsbench.metrics.crops import DEFAULT_CROP_FACTORS, crop_box
from gsbench.metrics.segmentation import SegmentationMetrics


def default_crop_factors(dataset: str) -> tuple[int, ...]:
    """The crop factors evaluated unless asked otherwise: Gated-SCNN's distance crops where the
    dataset's description asks for them (Cityscapes, see
    :attr:`~gsbench.data.description.DatasetDescription.distance_crops`), none elsewhere."""
    described = DATASETS.get(dataset)
    return DEFAULT_CROP_FACTORS if described is not None and described.distance_crops else ()


@dataclass(frozen=True)
class MetricsConfig:
    """Everything needed to build an empty accumulator; picklable, so workers can rebuild it."""

    num_classes: int
    class_names: tuple[str, ...]
    radii: tuple[int, ...] = DEFAULT_RADII
    crop_factors: tuple[int, ...] = DEFAULT_CROP_FACTORS
    fscore_convention: str = "gscnn"
    with_instances: bool = False

    @classmethod
    def for_dataset(
        cls,
        manifest: Manifest,
        *,
        radii: Sequence[int] | None = None,
        crop_factors: Sequence[int] | None = None,
        fscore_convention: str = "gscnn",
        with_instances: bool = False,
    ) -> MetricsConfig:
        """The metrics of ``manifest``'s classes; ``radii=None`` means the default radii,
        ``crop_factors=None`` :func:`default_crop_factors` of the dataset, ``()`` switches
        either off."""
        return cls(
            num_classes=manifest.num_classes,
            class_names=tuple(manifest.class_names),
            radii=tuple(DEFAULT_RADII if radii is None else radii),
            crop_factors=tuple(
                default_crop_factors(manifest.dataset) if crop_factors is None else crop_factors
            ),
            fscore_convention=fscore_convention,
            with_instances=with_instances,
        )


    def check_image_sizes(self, sizes: Iterable[tuple[int, int]]) -> None:
        """A one-line error naming the option unless every radius and crop fits images of
        these (height, width) sizes: a boundary radius at most half the shorter side (a larger
        disk localises nothing and its tables grow with its square), a crop that leaves
        pixels (:func:`~gsbench.metrics.crops.crop_box`). Checked before any image is read."""
        sizes = sorted(set(sizes))
        if not sizes:
            return
        if self.radii:
            height, width = min(sizes, key=min)
            if max(self.radii) > min(height, width) // 2:
                raise GsbenchError(
                    f"--radii {max(self.radii)}: a boundary radius must be at most half the "
                    f"shorter side of the images ({height}x{width}: at most "
                    f"{min(height, width) // 2} px)")
        if self.crop_factors:
            for height, width in sizes:
                try:
                    crop_box(height, width, max(self.crop_factors))
                except GsbenchError as exc:
                    raise GsbenchError(f"--crop-factors {max(self.crop_factors)}: {exc}") from None


def new_metrics(config: MetricsConfig) -> SegmentationMetrics:
    """An empty :class:`~gsbench.metrics.segmentation.SegmentationMetrics` for ``config``."""
    return SegmentationMetrics(
        config.num_classes,
        list(config.class_names),
        radii=config.radii,
        crop_factors=config.crop_factors,
        fscore_convention=config.fscore_convention,
        with_instances=config.with_instances,
    )


def check_fscore_convention(convention: str) -> None:
    """A one-line error naming ``--fscore-convention`` unless ``convention`` is known."""
    if convention not in CONVENTIONS:
        raise GsbenchError(f"unknown --fscore-convention {convention!r} "
                           f"(use {' or '.join(CONVENTIONS)})")


def parse_int_list(text: str, option: str, *, minimum: int = 0) -> tuple[int, ...]:
    """``"3,5,9,12"`` -> ``(3, 5, 9, 12)``, ``"none"`` -> ``()`` (switch the metric off);
    a one-line error naming ``option`` otherwise (``--radii``, ``--crop-factors``)."""
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise GsbenchError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise GsbenchError(f"{option}: expected integers or 'none', got {text!r}")
    if min(values) < minimum:
        raise GsbenchError(f"{option}: values must be >= {minimum}, got {text!r}")
    if len(set(values)) != len(values):
        raise GsbenchError(f"{option}: repeated value in {text!r}")
    return values
