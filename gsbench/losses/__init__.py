"""The losses, chosen by model name: common cross-entropy with ignore and OHEM, one file per
method whose loss has more terms, and the registry.

    from gsbench.losses import build_loss
    loss = build_loss("gscnn", ignore_index=255, aux_weight=0.4, options={"edge_weight": 20.0})

Laid out like :mod:`gsbench.models`: :mod:`.common` (:class:`SegmentationLoss`, the loss of
every model that predicts only class logits), :mod:`.ohem`, :mod:`.registry`
(:func:`build_loss`, :func:`register_loss`) and one module per method's loss
(:mod:`.gscnn`, :mod:`.ranet`, :mod:`.danet`), each registering its class under the model's
name. Losses read the models' output dicts by key and import no model module.
"""

from gsbench.losses.common import SegmentationLoss, cross_entropy_with_ignore
from gsbench.losses.ohem import ohem_keep_mask
from gsbench.losses.registry import build_loss, register_loss

__all__ = ["SegmentationLoss", "build_loss", "cross_entropy_with_ignore", "ohem_keep_mask",
           "register_loss"]
