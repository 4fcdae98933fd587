"""Renderers: they read finished runs and print or write them, never measure."""

from framescope.report.console import summary_lines, summary_table, system_table
from framescope.report.html import write_report

__all__ = ["summary_lines", "summary_table", "system_table", "write_report"]
