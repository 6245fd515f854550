"""Keypoint specs and the dataset readers: fixtures of every format load, round-trip, and bad files say where."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.data.datasets import DatasetError, read_coco, read_lsp, read_mpii, read_posetrack, to_coco_dict
from posekit.data.specs import SPECS, convert_keypoints, get_spec, keypoint_mapping


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_consistent(name: str) -> None:
    s = get_spec(name)
    k = s.num_keypoints
    assert len(s.sigmas) == k and len(set(s.keypoints)) == k
    assert all(0 <= a < k and 0 <= b < k for a, b in s.skeleton)
    for a, b in s.flip_pairs:  # a flip pair is a left/right (or mirrored face) pair
        na, nb = s.keypoints[a], s.keypoints[b]
        assert nb in (na.replace("left", "right"), na.replace("right", "left")) or na.startswith("face-")
    assert len(s.colors) == len(s.skeleton)


def test_spec_sizes_and_known_values() -> None:
    sizes = {n: s.num_keypoints for n, s in SPECS.items()}
    assert sizes == {"coco17": 17, "crowdpose14": 14, "mpii16": 16, "lsp14": 14, "posetrack17": 17, "halpe26": 26,
                     "halpe136": 136, "coco_wholebody133": 133, "blazepose33": 33}  # fmt: skip
    coco = get_spec("coco17")
    assert coco.flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    wb = get_spec("coco_wholebody133")
    assert wb.sigmas[17:23] == (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)  # feet
    assert wb.sigmas[91:112] == wb.sigmas[112:133]  # both hands share sigmas
    assert get_spec("posetrack17").keypoints[1:3] == ("head_bottom", "head_top")


def test_mappings_between_specs() -> None:
    # coco17 -> crowdpose14: 12 limb joints by name, neck = shoulder midpoint, no top_head
    mapping = dict(keypoint_mapping("coco17", "crowdpose14"))
    assert mapping[0] == (5,) and mapping[13] == (5, 6) and 12 not in mapping
    assert keypoint_mapping("halpe26", "coco17") == [(i, (i,)) for i in range(17)]
    assert len(keypoint_mapping("blazepose33", "coco17")) == 17
    kp = np.arange(34, dtype=np.float32).reshape(1, 17, 2)
    xy, s = convert_keypoints(kp, np.full((1, 17), 0.9, np.float32), "coco17", "crowdpose14")
    np.testing.assert_allclose(xy[0, 13], (kp[0, 5] + kp[0, 6]) / 2)
    assert s[0, 12] == 0 and s[0, 0] == pytest.approx(0.9)


COCO_FIXTURES = [
    ("coco/test_coco.json", "coco17", 4, 14),
    ("coco/test_coco_wholebody.json", "coco_wholebody133", 4, 14),
    ("halpe/test_halpe.json", "halpe136", 4, 14),
    ("crowdpose/test_crowdpose.json", "crowdpose14", 2, 5),
    ("ochuman/test_ochuman.json", "coco17", 3, 5),
    ("posetrack18/annotations/test_posetrack18_val.json", "posetrack17", 3, 14),
]


@pytest.mark.data
@pytest.mark.parametrize(("rel", "spec", "images", "persons"), COCO_FIXTURES)
def test_coco_style_fixtures_load_and_round_trip(data_dir: Path, tmp_path: Path, rel: str, spec: str, images: int, persons: int) -> None:
    samples = read_coco(data_dir / "fixtures" / rel)
    assert samples[0].spec == spec and len(samples) == images
    assert sum(len(s.instances) for s in samples) == persons
    again_path = tmp_path / "again.json"
    again_path.write_text(json.dumps(to_coco_dict(samples)))
    again = read_coco(again_path, data_dir / "fixtures", spec)
    for a, b in zip(samples, again):
        assert a.image_id == b.image_id and len(a.instances) == len(b.instances)
        for ia, ib in zip(a.instances, b.instances):
            np.testing.assert_allclose(ia.keypoints, ib.keypoints)
            np.testing.assert_allclose(ia.box, ib.box, atol=1e-4)
            assert ia.track_id == ib.track_id and ia.iscrowd == ib.iscrowd


@pytest.mark.data
def test_wholebody_parts_are_concatenated_in_order(data_dir: Path) -> None:
    raw = json.loads((data_dir / "fixtures/coco/test_coco_wholebody.json").read_text())["annotations"][0]
    inst = read_coco(data_dir / "fixtures/coco/test_coco_wholebody.json")[0].instances[0]
    np.testing.assert_allclose(inst.keypoints[23:91].reshape(-1), raw["face_kpts"])
    np.testing.assert_allclose(inst.keypoints[112:].reshape(-1), raw["righthand_kpts"])


@pytest.mark.data
def test_posetrack_mpii_and_lsp_readers(data_dir: Path) -> None:
    fx = data_dir / "fixtures"
    frames = read_posetrack(fx / "posetrack18/annotations/val", fx / "posetrack18")
    assert len(frames) == 3 and all(s.image_path.exists() for s in frames)
    inst = frames[0].instances[0]
    assert inst.track_id is not None and inst.extras["head_box"].shape == (4,)
    mpii = read_mpii(fx / "mpii/test_mpii.json", fx / "mpii")
    assert sum(len(s.instances) for s in mpii) == 5 and all(s.image_path.exists() for s in mpii)
    rec = json.loads((fx / "mpii/test_mpii.json").read_text())[0]
    first = next(s for s in mpii if s.image_id == rec["image"]).instances[0]
    np.testing.assert_allclose(first.keypoints[:, :2], rec["joints"])
    lsp = read_lsp(data_dir / "lspet/joints.mat")
    assert len(lsp) == 10000 and lsp[0].image_path.name == "im00001.jpg" and lsp[0].image_path.exists()
    vis = np.stack([s.instances[0].keypoints[:, 2] for s in lsp])
    assert set(np.unique(vis)) == {0.0, 2.0} and (vis > 0).mean() > 0.85


def test_malformed_files_name_file_record_and_field(tmp_path: Path) -> None:
    good = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [
        {"id": 7, "image_id": 1, "bbox": [0, 0, 10, 10], "keypoints": [0] * 51},
        {"id": 8, "image_id": 1, "keypoints": [0] * 51},
    ]}  # fmt: skip
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(good))
    with pytest.raises(DatasetError, match=r"bad\.json: annotations\[1\] \(id 8\): missing field 'bbox'"):
        read_coco(p)
    good["annotations"][1]["bbox"] = [0, 0, 1, 1]
    good["annotations"][1]["keypoints"] = [0] * 50
    p.write_text(json.dumps(good))
    with pytest.raises(DatasetError, match=r"annotations\[1\].*'keypoints'"):
        read_coco(p, spec="coco17")
    p.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_coco(p)
    p.write_text(json.dumps([{"image": "x.jpg", "joints": [[0, 0]] * 16, "center": [1, 1], "scale": 1}]))
    with pytest.raises(DatasetError, match=r"record 0 \(x\.jpg\): missing field 'joints_vis'"):
        read_mpii(p)
