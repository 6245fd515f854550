"""Write a generated demo image (two drawn figures) for `make demo` when ../shared/data is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def draw_figure(img: np.ndarray, cx: int, top: int, h: int, color: tuple[int, int, int]) -> None:
    u = h // 8
    head = (cx, top + u)
    neck, hip = (cx, top + 2 * u), (cx, top + 5 * u)
    cv2.circle(img, head, u, color, -1, cv2.LINE_AA)
    for a, b in [(neck, hip), (neck, (cx - 2 * u, top + 4 * u)), (neck, (cx + 2 * u, top + 4 * u)),
                 (hip, (cx - u, top + 8 * u)), (hip, (cx + u, top + 8 * u))]:  # fmt: skip
        cv2.line(img, a, b, color, max(3, u // 2), cv2.LINE_AA)


def main(path: str) -> None:
    img = np.full((480, 640, 3), (180, 200, 220), np.uint8)
    draw_figure(img, 220, 60, 360, (40, 60, 90))
    draw_figure(img, 440, 100, 320, (90, 50, 40))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(path, img)
    print(f"generated {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo-input.jpg")
