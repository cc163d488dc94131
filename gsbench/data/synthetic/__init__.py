"""The built-in synthetic dataset: procedural street scenes in the exact raw Cityscapes layout
(or ADE20K's), so that the real-data code paths (prepare-data, training, evaluation) run on it
unchanged.

    from gsbench.data.synthetic import prepare_synthetic
    manifest = prepare_synthetic("synthetic", n_train=32, n_val=8)

- :mod:`.canvas`: the painter's list, styles, textures, colours and the camera;
- :mod:`.objects`: what stands in the street (poles, signs, lights, trees, persons, vehicles);
- :mod:`.scene`: the street itself and the layout of one scene;
- :mod:`.render`: the label, instance and polygon outputs and the shaded image of a scene;
- :mod:`.write`: the dataset on disk (layouts, file names, workers, regeneration).
"""

from gsbench.data.synthetic.render import SyntheticScene, render_scene
from gsbench.data.synthetic.write import generate_synthetic, parse_size, prepare_synthetic

__all__ = ["SyntheticScene", "generate_synthetic", "parse_size", "prepare_synthetic",
           "render_scene"]
