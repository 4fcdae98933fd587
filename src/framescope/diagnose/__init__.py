"""Diagnosis: rules that read a finished (or starting) run's record and say what deserves attention.

Each rule is a pure function ``rule(run) -> Finding | None`` over a :class:`~framescope.records.RunResult`
(its summary, rows, config and system), registered in :data:`RULES`. Rules never measure, print or write: the
run and the CLI do that with what they return. Instruments measure and the pipeline runs; judging happens
here, in one place.
"""

from framescope.diagnose._finding import SEVERITIES, Finding, Severity
from framescope.diagnose._rules import RULES, diagnose, rule

__all__ = ["RULES", "SEVERITIES", "Finding", "Severity", "diagnose", "rule"]
