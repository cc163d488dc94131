"""Training and test-time inference: :mod:`.train` (with :mod:`.distributed` and
:mod:`.checkpoint`), :mod:`.inference`, the run folder they meet in (:mod:`.run_dir`), the model
outputs inference can score (:mod:`.outputs`) and the Cityscapes test-server export
(:mod:`.export`). Scoring a run is :mod:`gsbench.evaluation`'s."""
