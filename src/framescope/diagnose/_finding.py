"""A finding: one sentence of diagnosis, the numbers behind it, and where a flag fixes it, the flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    """Stable across versions: tools and tests key on it."""
    severity: Severity
    message: str
    """One sentence: what happened, why it matters, what to do."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """The numbers from this run that triggered it, and the threshold they crossed, by name."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Flat run settings (as ``RunConfig.replace`` takes them) that apply the fix; empty when no flag does."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
