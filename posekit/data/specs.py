"""Keypoint specs, each defined once here and looked up by name, and mappings between them.

Names, orders and OKS sigmas are the datasets' official ones (COCO cocoapi; CrowdPose; MPII as MMPose
ships it, sigmas adapted from COCO; PoseTrack18; Halpe-FullBody halpecocotools; COCO-WholeBody
myeval_wholebody). Flip pairs come from the left_/right_ names; link colours from the side of the body.
"""

from __future__ import annotations

import numpy as np

from posekit.structures import KeypointSpec

LEFT, RIGHT, CENTRE = (0, 255, 0), (255, 128, 0), (51, 153, 255)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO17_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                 0.107, 0.107, 0.087, 0.087, 0.089, 0.089)  # fmt: skip
COCO17_LINKS = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"), ("left_eye", "right_eye"), ("nose", "left_eye"),
    ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"), ("left_ear", "left_shoulder"),
    ("right_ear", "right_shoulder"),
)  # fmt: skip
FEET_LINKS = (("left_ankle", "left_big_toe"), ("left_ankle", "left_small_toe"), ("left_ankle", "left_heel"),
              ("right_ankle", "right_big_toe"), ("right_ankle", "right_small_toe"), ("right_ankle", "right_heel"))  # fmt: skip

# 68-point face (iBUG order): mirror pairs for flipping; contour, brows, nose, eyes and mouth as links
FACE68_MIRROR = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9), (17, 26), (18, 25), (19, 24), (20, 23),
    (21, 22), (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (48, 54), (49, 53),
    (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67),
)  # fmt: skip
FACE68_CHAINS = ((0, 16), (17, 21), (22, 26), (27, 30), (31, 35), (36, 41), (42, 47), (48, 59), (60, 67))
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


def face_names() -> tuple[str, ...]:
    return tuple(f"face-{i}" for i in range(68))


def hand_names(side: str) -> tuple[str, ...]:
    return (f"{side}_hand_root", *(f"{side}_{f}{j}" for f in FINGERS for j in range(1, 5)))


def face_links() -> list[tuple[str, str]]:
    links = [(f"face-{i}", f"face-{i + 1}") for a, b in FACE68_CHAINS for i in range(a, b)]
    return links + [("face-41", "face-36"), ("face-47", "face-42"), ("face-59", "face-48"), ("face-67", "face-60")]


def hand_links(side: str) -> list[tuple[str, str]]:
    links = []
    for f in FINGERS:
        chain = [f"{side}_hand_root", *(f"{side}_{f}{j}" for j in range(1, 5))]
        links += list(zip(chain[:-1], chain[1:]))
    return links


def _mirror(name: str) -> str | None:
    for a, b in (("left_", "right_"), ("right_", "left_"), ("left", "right"), ("right", "left")):
        if name.startswith(a):
            return b + name[len(a) :]
    return None


def make_spec(name: str, keypoints: tuple[str, ...], links, sigmas) -> KeypointSpec:
    """A spec from names: flip pairs from left/right names (and the face mirror), links by name."""
    index = {k: i for i, k in enumerate(keypoints)}
    if len(sigmas) != len(keypoints):
        raise ValueError(f"{name}: {len(sigmas)} sigmas for {len(keypoints)} keypoints")
    pairs = {tuple(sorted((i, index[m]))) for i, k in enumerate(keypoints) if (m := _mirror(k)) in index}
    if "face-0" in index:
        base = index["face-0"]
        pairs |= {(base + a, base + b) for a, b in FACE68_MIRROR}
    skeleton = tuple((index[a], index[b]) for a, b in links)

    def side(a: str, b: str) -> tuple[int, int, int]:
        if a.startswith("left") or b.startswith("left"):
            return LEFT
        if a.startswith("right") or b.startswith("right"):
            return RIGHT
        return CENTRE

    return KeypointSpec(name, tuple(keypoints), tuple(sorted(pairs)), skeleton, tuple(sigmas), tuple(side(a, b) for a, b in links))


COCO17 = make_spec("coco17", COCO17_NAMES, COCO17_LINKS, COCO17_SIGMAS)

CROWDPOSE14 = make_spec(
    "crowdpose14",
    ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
     "left_knee", "right_knee", "left_ankle", "right_ankle", "top_head", "neck"),
    (("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
     ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
     ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
     ("top_head", "neck"), ("right_shoulder", "neck"), ("left_shoulder", "neck")),
    (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
)  # fmt: skip

MPII16 = make_spec(
    "mpii16",
    ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax", "upper_neck",
     "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist"),
    (("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "pelvis"), ("pelvis", "left_hip"),
     ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("pelvis", "thorax"), ("thorax", "upper_neck"),
     ("upper_neck", "head_top"), ("upper_neck", "right_shoulder"), ("right_shoulder", "right_elbow"),
     ("right_elbow", "right_wrist"), ("upper_neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist")),
    (0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179, 0.072, 0.062),
)  # fmt: skip

# LSP has no official OKS sigmas; these are COCO's for the same joints (neck/head top: shoulder-like 0.079)
LSP14 = make_spec(
    "lsp14",
    ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist", "right_elbow",
     "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top"),
    (("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
     ("right_hip", "left_hip"), ("right_shoulder", "right_hip"), ("left_shoulder", "left_hip"), ("right_wrist", "right_elbow"),
     ("right_elbow", "right_shoulder"), ("left_wrist", "left_elbow"), ("left_elbow", "left_shoulder"),
     ("right_shoulder", "neck"), ("left_shoulder", "neck"), ("neck", "head_top")),
    (0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.062, 0.072, 0.079, 0.079, 0.072, 0.062, 0.079, 0.079),
)  # fmt: skip

POSETRACK17 = make_spec(
    "posetrack17",
    ("nose", "head_bottom", "head_top", *COCO17_NAMES[3:]),
    (
        *COCO17_LINKS[:12],
        ("nose", "head_bottom"),
        ("nose", "head_top"),
        ("head_bottom", "left_shoulder"),
        ("head_bottom", "right_shoulder"),
    ),
    COCO17_SIGMAS,
)

_HALPE_EXTRA = ("head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel")
_HALPE_LINKS = (
    *COCO17_LINKS[:4], ("left_hip", "hip"), ("right_hip", "hip"), ("head", "neck"), ("neck", "hip"), ("neck", "left_shoulder"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), *COCO17_LINKS[12:], *FEET_LINKS,
)  # fmt: skip
HALPE26 = make_spec("halpe26", COCO17_NAMES + _HALPE_EXTRA, _HALPE_LINKS,
                    COCO17_SIGMAS + (0.026, 0.026, 0.066, 0.079, 0.079, 0.079, 0.079, 0.079, 0.079))  # fmt: skip

HALPE136 = make_spec(
    "halpe136",
    COCO17_NAMES + _HALPE_EXTRA + face_names() + hand_names("left") + hand_names("right"),
    (*_HALPE_LINKS, *face_links(), *hand_links("left"), *hand_links("right"),
     ("left_wrist", "left_hand_root"), ("right_wrist", "right_hand_root")),
    COCO17_SIGMAS + (0.08, 0.08, 0.08) + (0.089,) * 6 + (0.015,) * 110,
)  # fmt: skip

_WHOLEBODY_SIGMAS = COCO17_SIGMAS + (
    0.068, 0.066, 0.066, 0.092, 0.094, 0.094,  # feet
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041,
    0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012,
    0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034,
    0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008,
    0.008, 0.008, 0.01, 0.008,  # face (68)
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021,
    0.032, 0.02, 0.019, 0.022, 0.031,  # left hand (21)
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021,
    0.032, 0.02, 0.019, 0.022, 0.031,  # right hand (21)
)  # fmt: skip
WHOLEBODY_FEET = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
COCO_WHOLEBODY133 = make_spec(
    "coco_wholebody133",
    COCO17_NAMES + WHOLEBODY_FEET + face_names() + hand_names("left") + hand_names("right"),
    (*COCO17_LINKS, *FEET_LINKS, *face_links(), *hand_links("left"), *hand_links("right"),
     ("left_wrist", "left_hand_root"), ("right_wrist", "right_hand_root")),
    _WHOLEBODY_SIGMAS,
)  # fmt: skip

# BlazePose (MediaPipe) 33 landmarks; no official OKS sigmas: COCO's where the joint exists, else 0.025-0.089 by part
_BLAZE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer", "left_ear",
    "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index",
    "right_foot_index",
)  # fmt: skip
_coco_sigma = dict(zip(COCO17_NAMES, COCO17_SIGMAS))
BLAZEPOSE33 = make_spec(
    "blazepose33",
    _BLAZE_NAMES,
    (*COCO17_LINKS,
     ("left_wrist", "left_pinky"), ("left_wrist", "left_index"), ("left_wrist", "left_thumb"), ("right_wrist", "right_pinky"),
     ("right_wrist", "right_index"), ("right_wrist", "right_thumb"), ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"),
     ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"), ("mouth_left", "mouth_right")),
    tuple(_coco_sigma.get(n, 0.025 if ("eye" in n or "mouth" in n) else 0.062 if n.split("_")[-1] in ("pinky", "index", "thumb") else 0.089)
          for n in _BLAZE_NAMES),
)  # fmt: skip

SPECS: dict[str, KeypointSpec] = {
    s.name: s for s in [COCO17, CROWDPOSE14, MPII16, LSP14, POSETRACK17, HALPE26, HALPE136, COCO_WHOLEBODY133, BLAZEPOSE33]
}


def get_spec(name: str) -> KeypointSpec:
    if name not in SPECS:
        raise KeyError(f"unknown keypoint spec {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


# Joints that are the same place under another name in another dataset.
ALIASES = {"top_head": "head_top", "upper_neck": "neck", "head": "head_top"}
# Joints some specs lack that are defined as midpoints of others.
MIDPOINTS = {
    "neck": ("left_shoulder", "right_shoulder"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "pelvis": ("left_hip", "right_hip"),
    "hip": ("left_hip", "right_hip"),
}


def keypoint_mapping(src: str, dst: str) -> list[tuple[int, tuple[int, ...]]]:
    """For each destination joint that `src` can provide: (dst index, src indices to average)."""
    s, d = get_spec(src), get_spec(dst)
    index = {ALIASES.get(k, k): i for i, k in enumerate(s.keypoints)}
    out = []
    for j, name in enumerate(d.keypoints):
        key = ALIASES.get(name, name)
        if key in index:
            out.append((j, (index[key],)))
        elif name in MIDPOINTS and all(m in index for m in MIDPOINTS[name]):
            out.append((j, tuple(index[m] for m in MIDPOINTS[name])))
    return out


def convert_keypoints(keypoints: np.ndarray, scores: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N,Ks,2] and scores [N,Ks] of spec `src` as spec `dst`; joints `src` lacks get score 0.

    A midpoint joint (e.g. neck from the shoulders) takes the lower score of its parents."""
    kd = get_spec(dst).num_keypoints
    n = len(keypoints)
    out_xy = np.zeros((n, kd, 2), np.float32)
    out_s = np.zeros((n, kd), np.float32)
    for j, sources in keypoint_mapping(src, dst):
        out_xy[:, j] = keypoints[:, list(sources)].mean(1)
        out_s[:, j] = scores[:, list(sources)].min(1)
    return out_xy, out_s
