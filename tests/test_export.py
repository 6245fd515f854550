"""Export (ONNX, TorchScript) and the ONNX Runtime backend: parity with torch on real images, files that
run with no posekit import, and the pipeline's outputs equal between backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posekit.cli import main
from posekit.export.models import PARITY_LIMIT, export_model
from posekit.export.onnx import export_onnx, onnx_session, read_metadata
from posekit.pipeline.readers import read_image
from posekit.zoo.tfjs_ops import _top_k

PLAIN_ORT = """
import json, sys
import numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {i.name: np.load(sys.argv[2])[i.name] for i in s.get_inputs()}
outs = s.run(None, feeds)
meta = s.get_modelmeta().custom_metadata_map
print(json.dumps({"posekit_imported": any(m.startswith("posekit") for m in sys.modules),
                  "shapes": [list(o.shape) for o in outs], "source_sha256": meta["posekit.source_sha256"]}))
"""


def _images(coco_mini: Path, n: int = 3) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((coco_mini / "train2017").glob("*.jpg"))[:n]]


class _AsymmetricPad(torch.nn.Module):
    """TF 'SAME' at stride 2 on an even input: one row and column of zeros at the end only."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.weight, stride=2)


def test_asymmetric_pad_is_folded_into_the_conv(tmp_path: Path) -> None:
    import onnx

    torch.manual_seed(0)
    module, x = _AsymmetricPad(), torch.randn(2, 3, 16, 16)
    path = export_onnx(module, [x], tmp_path / "m.onnx", ["x"], ["y"], {"posekit.source": "test"})
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Pad" not in ops and ops.count("Conv") == 1
    got = onnx_session(path).run(None, {"x": x[:1].numpy()})[0]  # another batch size than the trace's
    np.testing.assert_allclose(got, module(x[:1]).detach().numpy(), atol=1e-5)
    assert read_metadata(path)["posekit.source"] == "test"


def test_top_k_keeps_tensorflow_tie_order() -> None:
    """The fast TopK equals a full stable sort (TF: ties in index order), with many ties."""
    g = torch.Generator().manual_seed(0)
    for shape, k in [((1, 5000), 100), ((3, 4000), 37), ((2, 50), 10)]:
        x = torch.randint(0, 20, shape, generator=g).float()
        values, indices = torch.sort(x, dim=-1, descending=True, stable=True)
        got_v, got_i = _top_k(x, torch.tensor(k))
        assert torch.equal(got_v, values[:, :k]) and torch.equal(got_i, indices[:, :k].int())


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.weights
@pytest.mark.parametrize("name", ["topdown-thunder", "topdown-lightning", "movenet-multipose", "topdown-wholebody"])
def test_tfjs_graphs_export_with_parity_and_run_without_posekit(name: str, coco_mini: Path, weights, tmp_path: Path) -> None:
    from posekit.zoo.graph_module import TfjsGraphModule  # noqa: F401 (the modules are built by export_model)
    from posekit.zoo.loader import PIPELINES
    from posekit.zoo.store import read_manifest

    reports = export_model(name, "onnx", tmp_path / "m.onnx", _images(coco_mini))
    assert [r.part for r in reports] == list(PIPELINES[name][1])  # every network of the pipeline, the part models too
    sizes = {"blazepose-full": 256, "handlandmark-full": 224, "facemesh": 192, "handdetect": 256, "blazeface": 256}
    for r in reports:
        assert r.max_rel_diff <= PARITY_LIMIT, r.line()
        meta = read_metadata(r.path)
        assert meta["posekit.source_sha256"] == read_manifest()["models"][r.part]["sha256"]
        # the file alone, in a plain onnxruntime session, at a batch size the trace did not see
        inputs = {i.name: i for i in onnx_session(r.path).get_inputs()}
        if r.part in sizes:  # each part model traced at its own input size
            assert meta["posekit.input_shape"] == str([sizes[r.part], sizes[r.part], 3])
        feeds = {n: np.random.default_rng(0).uniform(0, 255, (5, *i.shape[1:])).astype(np.float32) for n, i in inputs.items()}
        np.savez(tmp_path / "feeds.npz", **feeds)
        out = subprocess.run([sys.executable, "-c", PLAIN_ORT, str(r.path), str(tmp_path / "feeds.npz")], capture_output=True, text=True,
                             check=True)  # fmt: skip
        plain = json.loads(out.stdout)
        assert not plain["posekit_imported"] and all(s[0] == 5 for s in plain["shapes"])
        assert plain["source_sha256"] == meta["posekit.source_sha256"]


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.weights
def test_pipeline_outputs_equal_between_backends(coco_mini: Path, weights) -> None:
    """Same person boxes: keypoints within 0.01 px. With the detector: the same persons, boxes within
    1e-3 px (a box that moves by 1e-4 px can change a crop pixel by one grey level, which may move an
    unconfident keypoint to another near-tied heatmap peak; README)."""
    from posekit.api import PoseEstimator

    gt = json.loads((coco_mini / "annotations" / "person_keypoints_train2017.json").read_text())
    torch_est, ort_est = PoseEstimator(backend="torch"), PoseEstimator(backend="onnxruntime")
    assert (torch_est.backend, ort_est.backend) == ("torch", "onnxruntime")
    checked = 0
    for img in gt["images"][:20]:
        boxes = np.array([a["bbox"] for a in gt["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]], np.float32).reshape(-1, 4)
        image = read_image(coco_mini / "train2017" / img["file_name"])
        if len(boxes):
            boxes[:, 2:] += boxes[:, :2]
            a, b = torch_est.estimate(image, boxes), ort_est.estimate(image, boxes)
            assert np.abs(a.keypoints - b.keypoints).max() <= 0.01 and np.abs(a.keypoint_scores - b.keypoint_scores).max() <= 1e-4
            checked += len(boxes)
        a, b = torch_est.estimate(image), ort_est.estimate(image)
        assert len(a) == len(b)
        if len(a):
            assert np.abs(np.sort(a.boxes, 0) - np.sort(b.boxes, 0)).max() <= 1e-3
    assert checked > 20


def test_export_refuses_bad_requests_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["export", "--model", "no-such-model", "--images", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posekit: error:") and "\n" not in err and "no-such-model" in err
    assert main(["export", "--model", "movenet-thunder", "--images", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no real images" in capsys.readouterr().err
