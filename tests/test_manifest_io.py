"""The manifest contract and the atomic I/O helpers."""

import os
import stat

import numpy as np
import pytest

from gsbench.data.manifest import Manifest, Sample, find_prepared
from gsbench.errors import GsbenchError
from gsbench.io import read_label, write_png


def _manifest(root):
    sample = Sample(stem="a_000000_000001", image="img.png", label="lab.png", edge=None,
                    instance=None, height=4, width=6, sha256={"label": "0" * 64})
    return Manifest(dataset="cityscapes", num_classes=19, class_names=["c"] * 19,
                    ignore_index=255, splits={"val": [sample]}, root=root)


def test_manifest_round_trip_and_lookup(tmp_path):
    prepared = tmp_path / "raw" / "gsbench"
    _manifest(prepared).save()
    for where in (prepared, tmp_path / "raw"):
        loaded = Manifest.load(where)
        assert loaded.root == prepared.resolve()
        assert loaded.split("val")[0].stem == "a_000000_000001"
        assert loaded.path("lab.png") == (prepared / "lab.png").resolve()
    with pytest.raises(GsbenchError, match="no split 'train'"):
        Manifest.load(prepared).split("train")


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(GsbenchError, match="no such folder"):
        find_prepared(tmp_path / "missing")
    with pytest.raises(GsbenchError, match="prepare-data"):
        find_prepared(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(GsbenchError, match="manifest.json: not valid JSON"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(GsbenchError, match="not a gsbench manifest"):
        Manifest.load(tmp_path)


def test_png_round_trip_leaves_no_temporary_files(tmp_path):
    label = np.arange(24, dtype=np.uint8).reshape(4, 6)
    write_png(tmp_path / "sub" / "x.png", label)
    np.testing.assert_array_equal(read_label(tmp_path / "sub" / "x.png"), label)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "sub" / "x.png").stat().st_mode) == 0o666 & ~umask
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(GsbenchError, match="bad.png: not a readable image"):
        read_label(tmp_path / "bad.png")
