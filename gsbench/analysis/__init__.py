"""What reads models without training them: the figures the papers' complexity tables print.

- :mod:`.complexity`: parameters, FLOPs / MACs, peak memory and latency of any module
  (``gsbench profile``, GFF Table 3, Gated-SCNN Table 5);
- :mod:`.rfsr`: receptive field and sample rate of the atrous context modules (GPSNet App. A,
  Table 4, ``gsbench rfsr``);
- :mod:`.attention`: the attention / context modules of RANet Table 3 built on their own and
  profiled (``gsbench profile --module``).

This package sits above :mod:`gsbench.models`: it imports the models' modules, and nothing in
``models/`` or ``metrics/`` imports it.
"""
