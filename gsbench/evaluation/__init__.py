"""Evaluation: how a trained model or a folder of predictions becomes a metrics.json.

- :mod:`.metrics_config`: which metrics are computed, with their defaults (radii, crop
  factors, F-score convention) and the parsing of their options
- :mod:`.pred_dir`: scoring a folder of predicted label maps (``gsbench eval --pred-dir``)
- :mod:`.model`: scoring a trained model, a run folder or checkpoint (``gsbench eval RUN``)
- :mod:`.report`: rendering a metrics.json as terminal tables, CSV and Markdown, and writing it

The modules are imported one by one (``from gsbench.evaluation.pred_dir import ...``); this
package imports none of them, so that the light ones stay light.
"""
