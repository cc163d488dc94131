"""The class-logit maps a model offers at inference, by name.

Every gsbench model returns its prediction as ``"out"`` (the contract of
:class:`gsbench.models.common.SegmentationModel`). A model may expose further class-logit maps
that can be scored instead: it lists their names in an ``extra_outputs`` attribute and returns
them in eval mode when called as ``model(images, outputs=names)`` (RANet's coarse map C, the
"coarse segmentation" of RANet Table 4).

Loads no torch (a model is only asked for an attribute), so that naming an evaluation
(:mod:`gsbench.evaluation.setting`) and the tables stay light.
"""

from __future__ import annotations

from typing import Any

from gsbench.errors import GsbenchError

#: The model output scored by default: the final prediction.
MAIN_OUTPUT = "out"


def model_outputs(model: Any) -> tuple[str, ...]:
    """The class-logit maps ``model`` can return at inference: ``"out"`` and its
    ``extra_outputs`` (e.g. ``("out", "coarse")`` for RANet with its region blocks)."""
    return (MAIN_OUTPUT, *getattr(model, "extra_outputs", ()))


def check_output(model: Any, output: str, what: str = "the model") -> None:
    """A GsbenchError unless ``output`` is one of :func:`model_outputs`."""
    outputs = model_outputs(model)
    if output not in outputs:
        raise GsbenchError(f"output {output!r}: {what} has no such output "
                           f"(its outputs: {', '.join(outputs)})")
