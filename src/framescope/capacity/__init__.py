"""How many cameras a machine serves: one clip replayed as N cameras, N searched (doubling, then
bisection) for the most served within a latency percentile budget and a drop limit."""

from framescope.capacity._capacity import (
    CAPACITY_CSV,
    CAPACITY_JSON,
    CAPACITY_YAML,
    TRIALS_DIR,
    Capacity,
    Setting,
    decode_cost,
    is_capacity_dir,
    load_capacity,
    pipeline_cost,
)
from framescope.capacity._search import CameraSearch
from framescope.capacity._trial import TailRule, TailWatch, judge

__all__ = [
    "CAPACITY_CSV",
    "CAPACITY_JSON",
    "CAPACITY_YAML",
    "TRIALS_DIR",
    "CameraSearch",
    "Capacity",
    "Setting",
    "TailRule",
    "TailWatch",
    "decode_cost",
    "is_capacity_dir",
    "judge",
    "load_capacity",
    "pipeline_cost",
]
