"""Write a generated demo image (two drawn people) for `make demo` when ../shared/data is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SKIN = (140, 170, 220)  # BGR


def limb(img: np.ndarray, a: tuple[int, int], b: tuple[int, int], width: int, color: tuple[int, int, int]) -> None:
    cv2.line(img, a, b, color, width, cv2.LINE_AA)
    cv2.circle(img, b, width // 2, color, -1, cv2.LINE_AA)


def draw_person(img: np.ndarray, cx: int, top: int, h: int, shirt: tuple[int, int, int], trousers: tuple[int, int, int]) -> None:
    """A standing person, arms slightly out, proportions of an adult (head = 1/8 of the height)."""
    u = h / 8
    p = lambda x, y: (int(cx + x * u), int(top + y * u))  # noqa: E731
    cv2.ellipse(img, p(0, 0.55), (int(0.38 * u), int(0.5 * u)), 0, 0, 360, SKIN, -1, cv2.LINE_AA)
    cv2.ellipse(img, p(0, 0.35), (int(0.4 * u), int(0.3 * u)), 0, 180, 360, (30, 40, 60), -1, cv2.LINE_AA)  # hair
    limb(img, p(0, 1.0), p(0, 1.3), int(0.3 * u), SKIN)  # neck
    torso = np.array([p(-0.9, 1.4), p(0.9, 1.4), p(0.7, 4.1), p(-0.7, 4.1)], np.int32)
    cv2.fillPoly(img, [torso], shirt, cv2.LINE_AA)
    for s in (-1, 1):
        limb(img, p(0.8 * s, 1.6), p(1.2 * s, 2.9), int(0.38 * u), shirt)  # upper arm
        limb(img, p(1.2 * s, 2.9), p(1.35 * s, 4.0), int(0.3 * u), SKIN)  # forearm
        limb(img, p(0.4 * s, 4.0), p(0.5 * s, 6.0), int(0.55 * u), trousers)  # thigh
        limb(img, p(0.5 * s, 6.0), p(0.55 * s, 7.7), int(0.45 * u), trousers)  # shin
        cv2.ellipse(img, p(0.7 * s, 7.85), (int(0.35 * u), int(0.15 * u)), 0, 0, 360, (20, 20, 20), -1, cv2.LINE_AA)


def main(path: str) -> None:
    img = np.full((480, 640, 3), (205, 215, 225), np.uint8)
    img[330:] = (120, 150, 130)
    draw_person(img, 220, 50, 380, (60, 60, 170), (90, 60, 40))
    draw_person(img, 450, 90, 330, (150, 110, 40), (50, 50, 50))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(path, img)
    print(f"generated {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo-input.jpg")
