"""The model zoo: backbones, baseline heads and the paper methods, built by name.

    from gsbench.models import build_model, list_models
    model = build_model("pspnet", num_classes=19, backbone="resnet101", pretrained="r101.pth")

Every method module in this package registers its builders with
:func:`~gsbench.models.registry.register_model`; see :mod:`gsbench.models.registry` for the
uniform builder arguments and :class:`~gsbench.models.common.SegmentationModel` for the forward
contract.
"""

from gsbench.models.backbones import build_backbone, list_backbones
from gsbench.models.registry import build_model, get_model_builder, list_models, register_model

__all__ = ["build_backbone", "build_model", "get_model_builder", "list_backbones", "list_models",
           "register_model"]
