"""Data paths in configs: '{data}' stands for the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path


def resolve(path: str) -> Path:
    """`path` with '{data}' replaced by POSEKIT_TEST_DATA (default: ../shared/data beside the checkout)."""
    data = os.environ.get("POSEKIT_TEST_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    return Path(path.replace("{data}", data))
