"""Several configurations of one job, run side by side: the experiment runner and what is built on it."""

from framescope.experiment._runner import Candidate, Experiment, Outcome, StopRule, Trial
from framescope.experiment._tune import LEVERS, TUNE_FILE, Change, changes_to_try, tune, verdict

__all__ = [
    "LEVERS",
    "TUNE_FILE",
    "Candidate",
    "Change",
    "Experiment",
    "Outcome",
    "StopRule",
    "Trial",
    "changes_to_try",
    "tune",
    "verdict",
]
