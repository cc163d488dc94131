"""Importing the released checkpoints of the papers' official code (and of mmsegmentation) as
ordinary gsbench run folders: ``gsbench import-weights FILE --from SOURCE --recipe NAME``.

* :mod:`.reading`: a released file read safely (``torch.load(weights_only=True)``), its state
  dict unwrapped;
* :mod:`.mapping`: source keys onto a gsbench model, every tensor accounted for;
* :mod:`.source`: what a source declares (recipes it fills, official-form options, mapping,
  preprocessing, test procedure); one module per source (:data:`SOURCES`) defines ``SOURCE``;
* :mod:`.importer`: the imported run folder with its provenance record.

A new source: a module ``gsbench/weights/<name>.py`` defining ``SOURCE`` and one line in
:data:`SOURCES`. This module loads no torch (the command line lists the sources in its help).
"""

from __future__ import annotations

import importlib

from gsbench.errors import GsbenchError

#: ``--from`` name -> what its files are (the module ``gsbench.weights.<name>`` reads them).
SOURCES: dict[str, str] = {
    "semseg": "hszhao/semseg: PSPNet, PSANet on ResNet-50/101 (ADE20K, VOC 2012, Cityscapes)",
    "gscnn": "nv-tlabs/GSCNN: Gated-SCNN on WideResNet-38 (Cityscapes)",
    "mmseg": "open-mmlab/mmsegmentation 1.x: FCN, PSPNet, DeepLabV3, DeepLabV3+, NonLocal, "
             "DANet, CCNet, ANN, PSANet on ResNetV1c-50/101-D8 (Cityscapes, ADE20K, VOC 2012)",
}

#: ``gsbench export-weights --to`` targets (:mod:`gsbench.weights.export`)
EXPORT_TARGETS = ("mmseg",)


def get_source(name: str):
    """The :class:`~gsbench.weights.source.Source` registered as ``name``."""
    if name not in SOURCES:
        raise GsbenchError(f"unknown weights source {name!r}; known: {', '.join(SOURCES)}")
    return importlib.import_module(f"{__name__}.{name}").SOURCE
