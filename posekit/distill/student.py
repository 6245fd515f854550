"""The student side of `posekit distill`: a training config that trains the student config's model on the
teacher's pseudo-labels (optionally beside labelled COCO files), written next to them so the run is
reproducible with `posekit train`, and a resumable training run through the one engine."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from posekit.engine.config import Config, config_from_raw, read_config_yaml
from posekit.errors import PosekitError
from posekit.fileio import atomic_write_bytes

# Data keys of the student config that describe how to feed the model (kept); the rest say where labelled
# data is (replaced by the pseudo-labels).
KEPT_DATA_KEYS = ("input_size", "augment", "num_workers")


def student_config(config_path: Path, pseudo_labels: Path, images: int, held_out: int, out_dir: Path,
                   labelled: list[tuple[str, str]] | None = None, overrides: dict[str, Any] | None = None) -> tuple[Config, str]:  # fmt: skip
    """`config_path` with its data replaced by the pseudo-labels (the first `images - held_out` images train,
    the last `held_out` validate: agreement with the teacher) plus each labelled (annotations, images) COCO
    source, and `overrides` as `--set` gives them: the config, and the YAML text `train_student` writes
    as OUT/student.yaml. A config that cannot be built is refused here, before anything runs."""
    raw = read_config_yaml(config_path)
    if images - held_out < 1 or held_out < 1:
        raise PosekitError(f"{pseudo_labels}: {images} pseudo-labelled images, {held_out} held out; need at least one of each"
                           " (more inputs, lower --kpt-thr / --person-thr, or another --holdout)")  # fmt: skip
    data = {k: v for k, v in (raw.get("data") or {}).items() if k in KEPT_DATA_KEYS}
    data.update({"format": "coco", "ann": str(Path(pseudo_labels).resolve()), "images": "", "train_range": [0, images - held_out],
                 "val_range": [images - held_out, images],
                 "extra_train": [{"ann": str(Path(a).resolve()), "images": str(Path(i).resolve())} for a, i in labelled or []]})  # fmt: skip
    raw = {**raw, "name": f"{raw.get('name', Path(config_path).stem)}_distilled", "data": data, "output": str(Path(out_dir).resolve())}
    where = str(Path(out_dir) / "student.yaml")
    header = f"# posekit distill: {config_path} trained on the teacher's pseudo-labels ({images} images, {held_out} held out)\n"
    return config_from_raw(raw, overrides, where), header + yaml.safe_dump(raw, sort_keys=False)


def train_student(config: Config, config_text: str, out_dir: Path, quiet: bool = False, max_steps: int | None = None
                  ) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Train (or resume: OUT/checkpoint.pt of the same config continues bit-identically) and return the
    engine's summary and the checkpoint path. A checkpoint of another config is refused, and it and its
    OUT/student.yaml are left as they are; otherwise `config_text` is written as OUT/student.yaml."""
    from posekit.engine.trainer import Trainer
    from posekit.zoo.checkpoints import read_checkpoint

    try:
        trainer = Trainer(config, out_dir, quiet=quiet)
    except ValueError as e:
        raise PosekitError(f"{out_dir / 'student.yaml'}: {e}") from e
    ckpt = trainer.checkpoint_path()
    if ckpt.exists():
        stored = read_checkpoint(ckpt)
        if stored["config"] != asdict(config):
            raise PosekitError(f"{ckpt}: a training run of another config (teacher, filter, inputs or --set changed); "
                               "use another --out, or delete that folder to start over")  # fmt: skip
        trainer.load_checkpoint()
        print(f"resumed the student from step {trainer.step}")
    atomic_write_bytes(Path(out_dir) / "student.yaml", config_text.encode())
    summary = trainer.train(max_steps)
    trainer.close()
    return summary, ckpt
