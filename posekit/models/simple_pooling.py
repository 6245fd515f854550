"""The pooling of SIMPLE's detection branch (simple.txt §4.1, defined in CenterNet, Duan et al. 2019):

- center pooling: at every location, the maximum of its whole row (one feature map) plus the maximum of its
  whole column (another): a centre sees the extent of the person across it.
- cascade corner pooling: a corner looks along a box boundary and then inside from there. For the top-left
  corner, one branch takes the maximum to the right of a `look` map, adds it to its features and takes the
  maximum downwards; the other branch the same with the directions swapped; the two are added. The
  bottom-right corner looks left and up.

Directional maxima are cumulative maxima over [N,C,H,W] maps; "right" at (y, x) is the
maximum over x' >= x of row y (the location itself included).
"""

from __future__ import annotations

import torch

_AXIS = {"right": (-1, True), "left": (-1, False), "down": (-2, True), "up": (-2, False)}
CORNER_DIRECTIONS = {"top_left": ("right", "down"), "bottom_right": ("left", "up")}


def directional_max(x: torch.Tensor, direction: str) -> torch.Tensor:
    """At each location, the maximum of `x` from it to the map's edge in `direction` (right, left, down, up).

    A doubling scan (after step i every location holds the maximum of the 2^i locations from it onwards) rather
    than `torch.cummax`: the same values, and it exports to ONNX, which has no cumulative maximum."""
    dim, towards_end = _AXIS[direction]
    n, span = x.shape[dim], 1
    while span < n:
        pad = torch.full_like(x.narrow(dim, 0, span), float("-inf"))
        if towards_end:  # location i also sees i + span
            shifted = torch.cat([x.narrow(dim, span, n - span), pad], dim)
        else:  # location i also sees i - span
            shifted = torch.cat([pad, x.narrow(dim, 0, n - span)], dim)
        x, span = torch.maximum(x, shifted), span * 2
    return x


def center_pool(horizontal: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Row maximum of `horizontal` plus column maximum of `vertical`, at every location."""
    return horizontal.amax(-1, keepdim=True) + vertical.amax(-2, keepdim=True)


def cascade_corner_pool(features: tuple[torch.Tensor, torch.Tensor], looks: tuple[torch.Tensor, torch.Tensor],
                        corner: str = "top_left") -> torch.Tensor:  # fmt: skip
    """Cascade corner pooling of two (features, look) branches: branch 1 looks along `first` then `second`,
    branch 2 along `second` then `first` (top_left: right and down; bottom_right: left and up)."""
    first, second = CORNER_DIRECTIONS[corner]
    one = directional_max(features[0] + directional_max(looks[0], first), second)
    two = directional_max(features[1] + directional_max(looks[1], second), first)
    return one + two
