"""Evaluation metrics: pure vectorised functions over uint8 trainId maps (255 = ignore) and
torchmetrics-style accumulators (``update`` / ``merge`` / ``compute`` / ``state_dict`` /
``load_state_dict`` / ``all_reduce``).

- :mod:`.confusion`: confusion matrix, mIoU, pixel and mean accuracy (official Cityscapes rules)
- :mod:`.boundary`: boundary F-score at 3/5/9/12 px (Gated-SCNN, DAVIS measure)
- :mod:`.crops`: Gated-SCNN distance-based crop mIoU
- :mod:`.instance`: Cityscapes iIoU
- :mod:`.segmentation`: all of them together, producing the metrics.json schema
"""

from gsbench.metrics.boundary import DEFAULT_RADII, BoundaryFScore, ImageBoundaryScores, boundary_fscore
from gsbench.metrics.confusion import ConfusionMatrix, confusion_matrix, scores_from_confusion
from gsbench.metrics.crops import DEFAULT_CROP_FACTORS, CropMIoU, crop_box, crop_confusion_matrices
from gsbench.metrics.instance import CITYSCAPES_AVG_CLASS_SIZE, InstanceIoU, instance_weighted_counts
from gsbench.metrics.segmentation import SegmentationMetrics

__all__ = [
    "CITYSCAPES_AVG_CLASS_SIZE",
    "DEFAULT_CROP_FACTORS",
    "DEFAULT_RADII",
    "BoundaryFScore",
    "ConfusionMatrix",
    "CropMIoU",
    "ImageBoundaryScores",
    "InstanceIoU",
    "SegmentationMetrics",
    "boundary_fscore",
    "confusion_matrix",
    "crop_box",
    "crop_confusion_matrices",
    "instance_weighted_counts",
    "scores_from_confusion",
]
