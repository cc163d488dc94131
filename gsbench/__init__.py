"""gsbench: reproduce the benchmark tables of gated and attention segmentation papers."""

__version__ = "0.1.0.dev0"
