"""Datasets: label tables, raw-layout readers, prepare-data, the synthetic generator."""
