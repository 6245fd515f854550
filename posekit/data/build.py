"""From a training config to samples and datasets: the model's `input_kind` picks a top-down crop
dataset or a whole-image dataset, and the model's `codec` makes the targets."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from posekit.data.datasets import Sample, match_detected_boxes, read_coco, read_detections, read_lsp, with_detected_boxes
from posekit.data.mosaic import MosaicSource
from posekit.data.paths import resolve
from posekit.data.topdown import TopDownDataset
from posekit.data.wholeimage import BottomUpAugment, WholeImageDataset


def read_splits(cfg: Any) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train samples, validation samples to run on, validation ground truth). With `val_det_file` the
    samples to run on hold the detector's boxes; the ground truth stays the annotations."""
    d = cfg.data
    read = read_lsp if d.format == "lsp" else read_coco
    samples = read(resolve(d.ann), resolve(d.images) if d.images else None)
    train = samples[slice(*d.train_range)] if d.train_range else samples
    for extra in d.extra_train:
        extra_samples = read_coco(resolve(extra.ann), resolve(extra.images) if extra.images else None)
        if extra_samples and extra_samples[0].spec != samples[0].spec:
            raise ValueError(f"data.extra_train {extra.ann}: spec {extra_samples[0].spec}, but data.ann is {samples[0].spec}")
        train = train + extra_samples
    if d.val_ann:
        val = read(resolve(d.val_ann), resolve(d.val_images) if d.val_images else None)
    else:
        val = samples[slice(*d.val_range)] if d.val_range else samples
    if (d.val_det_file or d.train_det_file) and d.format == "lsp":
        raise ValueError("data.*_det_file: LSP has one person per image and no image ids a detector file could name")
    if d.train_det_file:
        train = match_detected_boxes(train, read_detections(resolve(d.train_det_file), d.det_score_threshold))
    if d.val_det_file:
        return train, with_detected_boxes(val, read_detections(resolve(d.val_det_file), d.det_score_threshold)), val
    return train, val, val


def build_datasets(cfg: Any, model: Any, train: list[Sample], val: list[Sample]) -> tuple[Dataset, Dataset]:
    """Training and validation datasets for `model` (its input_kind, codec and spec)."""
    d, seed = cfg.data, cfg.train.seed
    size = tuple(d.input_size)
    if model.input_kind == "crops":
        return (TopDownDataset(train, size, model.codec, True, d.augment, seed),
                TopDownDataset(val, size, model.codec, False, seed=seed, require_keypoints=not d.val_det_file))  # fmt: skip
    if size[0] != size[1]:
        raise ValueError(f"data.input_size {list(size)}: whole-image models take square inputs")
    mosaic = None
    if d.mosaic.ann:
        m = d.mosaic
        lsp = read_lsp(resolve(m.ann), resolve(m.images) if m.images else None)
        mosaic = MosaicSource(lsp[slice(*m.range)] if m.range else lsp, model.spec.name, m.grids, m.scale)
    spec = model.spec.name
    return (WholeImageDataset(train, model.codec, size[0], True, spec, BottomUpAugment(), seed, mosaic, d.mosaic.count),
            WholeImageDataset(val, model.codec, size[0], False, spec, seed=seed))  # fmt: skip
