"""The codec oracle of a whole-image family: encode each image's ground truth with the family's codec at
the model's resolution, decode the targets with the family's own decoder (grouping included) as if a
perfect network had predicted them, and score with COCO AP. It is the round trip of a whole codec on
real data, and it says how much AP the decoding itself can lose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from posekit.data.datasets import read_coco
from posekit.data.specs import get_spec
from posekit.data.wholeimage import WholeImageDataset
from posekit.errors import PosekitError


def oracle_family(family: str) -> type:
    """The model class of a whole-image family (the ones a codec oracle applies to), or a one-line error."""
    from posekit.models import FAMILIES

    families = {name: cls for name, cls in FAMILIES.items() if cls.input_kind == "image"}
    if family not in families:
        raise PosekitError(f"--oracle {family!r}: not a whole-image family; choose from {', '.join(families)}")
    return families[family]


def codec_oracle(family: str, gt: Path, images: Path | None, input_size: int = 512, quiet: bool = True, **model_options: Any) -> dict[str, float]:
    """COCO keypoint stats of the family's codec round trip on every image of `gt` (COCO format)."""
    from posekit.engine.trainer import results_from_poses
    from posekit.evaluation.run import evaluate_samples
    from posekit.models.base import image_poses

    cls = oracle_family(family)
    samples = read_coco(gt, images)
    if not samples:
        raise PosekitError(f"{gt}: no images with annotations")
    spec = get_spec(samples[0].spec)
    codec = cls.make_codec(spec, (input_size, input_size), cls.config_class(**model_options))
    data = WholeImageDataset(samples, codec, input_size, False, spec.name)
    sigmas = np.array(spec.sigmas)
    per_image = {}
    for i in tqdm(range(len(data)), desc=f"oracle {family}", unit="image", disable=quiet or None, leave=False):
        item = {k: v.numpy() for k, v in data[i].items()}
        kp, kp_scores, scores = codec.oracle_decode(item)
        per_image[data.image_id(i)] = [image_poses(kp, kp_scores, scores, item["matrix"], spec, cls.oks_nms)]
    return evaluate_samples(samples, results_from_poses(per_image, sigmas, cls.oks_nms))
