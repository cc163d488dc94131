"""Evaluation: how a trained model or a folder of predictions becomes a metrics.json.

- :mod:`.setting`: what one evaluation of a run is (split, test protocol, scored output) and
  the name of the run-folder folder it writes to
- :mod:`.metrics_config`: which metrics are computed, with their defaults (radii, crop
  factors, F-score convention) and the parsing of their options
- :mod:`.pred_dir`: scoring a folder of predicted label maps (``gsbench eval --pred-dir``)
- :mod:`.model`: scoring a trained model, a run folder or checkpoint (``gsbench eval RUN``)
- :mod:`.report`: rendering a metrics.json as terminal tables, CSV and Markdown, and writing it

The modules are imported one by one (``from gsbench.evaluation.pred_dir import ...``); this
package imports none of them, so that the light ones (the setting, needed by the tables without
torch) stay light.
"""
