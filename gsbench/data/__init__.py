"""Datasets: one description per dataset (classes, label table, the reader of its raw layout;
listed by :mod:`gsbench.data.registry`), prepare-data, the manifest, the PyTorch dataset with its
transforms, and the synthetic generator."""
