"""The torch importer reproduces the original TF.js graphs (run by @tensorflow/tfjs) on real COCO images."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.pipeline.readers import read_image
from posekit.zoo.graph_module import TfjsGraphModule
from posekit.zoo.store import load_graph

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_parity_fixtures import OUTPUTS, largest_person_box, largest_person_keypoints, parity_inputs  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "parity"
INDEX = json.loads((FIXTURES / "index.json").read_text())
TOLERANCE = 1e-3

pytestmark = [pytest.mark.weights, pytest.mark.data]


@pytest.fixture(scope="module")
def annotations(coco_mini: Path) -> dict:
    return json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())


@pytest.fixture(scope="module")
def modules(weights) -> dict[str, TfjsGraphModule]:
    return {m: TfjsGraphModule(load_graph(m), outputs=outs) for m, outs in OUTPUTS.items()}


def test_fixtures_cover_every_model_on_three_images() -> None:
    assert {e["model"] for e in INDEX} == set(OUTPUTS)
    for model in OUTPUTS:
        assert len({e["image"] for e in INDEX if e["model"] == model}) >= 3


@pytest.mark.parametrize("entry", INDEX, ids=[e["key"] for e in INDEX])
def test_raw_outputs_match_tfjs(entry: dict, modules: dict, coco_mini: Path, annotations: dict) -> None:
    image = read_image(coco_mini / "train2017" / entry["image"])
    inputs = parity_inputs(entry["model"], image, largest_person_box(annotations, entry["image"]),
                           largest_person_keypoints(annotations, entry["image"]))  # fmt: skip
    for name, arr in inputs.items():
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        assert digest == entry["input_sha256"][name], "preprocessing changed: regenerate with tools/make_parity_fixtures.py"
    outs = modules[entry["model"]](*[torch.from_numpy(a) for a in inputs.values()])
    outs = outs if isinstance(outs, tuple) else (outs,)
    refs = np.load(FIXTURES / f"{entry['key']}.npz")
    for name, out in zip(OUTPUTS[entry["model"]], outs):
        ref = refs[name.replace("/", "__").replace(":", "--")]
        got = out.numpy()[..., : ref.shape[-1]]
        assert got.shape == ref.shape
        diff = float(np.abs(got - ref).max())
        assert diff <= TOLERANCE, f"{entry['key']} {name}: max abs diff {diff:.2e}"
