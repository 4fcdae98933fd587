"""The HTML report of one run, or a comparison of several: one self-contained file that opens offline.

plotly.js is embedded once, in the page's head; each chart is a ``<div>`` followed by its figure as JSON
(``<script type="application/json" class="fs-figure">``), drawn by one small loader at the end of the page.
Nothing in the page refers to the network: no CDN, font, image or stylesheet URL.

Renderers only read run directories (:func:`framescope.records.load_run`, and ``tune.json`` beside it);
numbers beyond what ``summary.json`` holds come from :mod:`framescope.stats`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import yaml

from framescope._version import __version__
from framescope.errors import FramescopeError, OutputError, OutputSpaceError
from framescope.records import RunResult, load_run

METRICS_GLOB = "M_*_P_*_metrics.csv"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(path.glob(METRICS_GLOB))


def launched_runs(path: Path) -> list[Path]:
    """A launch directory's workers' run directories (``framescope launch``), or ``[path]`` itself."""
    workers = path / "workers"
    if (path / "launch.yaml").is_file() and workers.is_dir():
        inner = sorted(p for p in workers.iterdir() if _is_run_dir(p))
        if inner:
            return inner
    return [path]


def load_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[RunResult]:
    """Each directory read with :func:`load_run`; anything that is not a readable run directory is a
    :class:`FramescopeError` naming it and what to pass instead."""
    results = []
    for run_dir in map(Path, run_dirs):
        if run_dir.exists() and not run_dir.is_dir():
            raise FramescopeError(
                f"{str(run_dir)!r} is a file, not a run directory; pass a directory made by framescope run."
            )
        if run_dir.is_dir() and not _is_run_dir(run_dir):
            inner = [path for path in sorted(run_dir.iterdir()) if _is_run_dir(path)]
            if inner:
                raise FramescopeError(
                    f"{str(run_dir)!r} holds {len(inner)} run directories, not one run; pass them, e.g. "
                    f"framescope report {run_dir}/* -o report.html."
                )
        try:
            results.append(load_run(run_dir))
        except FramescopeError:
            raise
        except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
            raise FramescopeError(
                f"cannot read run directory {str(run_dir)!r} ({_first_line(exc)}); is it a whole framescope "
                "run directory?"
            ) from None
    return results


_STYLE = """
:root { --ink: #1f2328; --muted: #57606a; --rule: #d0d7de; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 "DejaVu Sans", Verdana, Arial, sans-serif; color: var(--ink); }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 16px; margin: 24px 0 8px; }
h4 { font-size: 14px; margin: 8px 0 6px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px 28px; align-items: start; }
.grid > .wide { grid-column: 1 / -1; }
figure.chart { margin: 8px 0 16px; border: 1px solid var(--rule); border-radius: 6px; padding: 6px 8px 8px; }
figcaption { color: var(--muted); font-size: 12.5px; margin: 4px 6px 0; }
table { border-collapse: collapse; margin: 4px 0 12px; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 4px 10px 4px 0; }
th, td { border-bottom: 1px solid var(--rule); }
table.facts th { width: 11em; font-weight: 600; color: var(--muted); }
table thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--rule); }
table.numeric td { text-align: right; font-variant-numeric: tabular-nums; }
table.compare td, table.trials td { font-variant-numeric: tabular-nums; }
code { font: 12.5px "DejaVu Sans Mono", monospace; background: var(--soft); padding: 0 3px; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px;
  background: #eaeef2; color: var(--ink); vertical-align: middle; }
.badge.complete { background: #dafbe1; color: #116329; }
.badge.failed, .badge.critical { background: #ffebe9; color: #a40e26; }
.badge.warning, .badge.incomplete, .badge.interrupted { background: #fff8c5; color: #7d4e00; }
.badge.info { background: #ddf4ff; color: #0a3069; }
.muted { color: var(--muted); }
.notice { background: #fff8c5; padding: 6px 10px; border-radius: 6px; }
ul.runs { color: var(--muted); }
a { color: #0969da; }
"""

_LOADER = """
(function () {
  var config = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  document.querySelectorAll("script.FIGURE_CLASS").forEach(function (element) {
    var figure = JSON.parse(element.textContent);
    Plotly.newPlot(element.dataset.target, figure.data, figure.layout, config);
  });
})();
"""


def render_report(
    results: Sequence[RunResult],
    sweeps: Sequence[dict[str, Any]] = (),
    capacities: Sequence[dict[str, Any]] = (),
) -> str:
    """The whole page for ``results``: the comparison first when there are several, then each run; sweeps
    (``sweep.json`` as :func:`framescope.sweep.load_sweep` reads it) and capacity searches
    (``capacity.json``) before the runs."""
    from plotly.offline import get_plotlyjs

    from framescope.report import _capacity, _sections, _sweep

    labels = _sections.run_labels(results)
    flags = _sections.setting_flags()
    searches = [
        *((s["sweep_dir"], "sweep") for s in sweeps),
        *((c["capacity_dir"], "capacity") for c in capacities),
    ]
    if searches and not results:
        kind = searches[0][1]
        title = f"{kind} {Path(searches[0][0]).name}" if len(searches) == 1 else f"{len(searches)} searches"
        places = ", ".join(str(place) for place, _ in searches)
        one = len(searches) == 1
        what = f"{len(searches)} {kind if one else 'search'} director{'y' if one else 'ies'}"
    else:
        title = labels[0] if len(results) == 1 else f"comparison of {len(results)} runs"
        places = ", ".join([*(str(place) for place, _ in searches), *(str(r.run_dir) for r in results)])
        count = len(results) + len(searches)
        what = f"{count} director{'y' if count == 1 else 'ies'}"
    body = [
        f"<header><h1>framescope report: {escape(title)}</h1><p>{what}: {escape(places)}. "
        f"framescope {escape(__version__)}.</p></header>"
    ]
    body += [_capacity.capacity_section(c, f"c{index}") for index, c in enumerate(capacities, 1)]
    body += [_sweep.sweep_section(sweep, f"s{index}") for index, sweep in enumerate(sweeps, 1)]
    if len(results) > 1:
        body.append(_sections.comparison_section(results, labels))
    for index, (result, label) in enumerate(zip(results, labels, strict=True), 1):
        body.append(_sections.run_section(result, f"r{index}", label, flags))
    loader = _LOADER.replace("FIGURE_CLASS", _sections.FIGURE_CLASS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>framescope report: {escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><main>{''.join(body)}</main><script>{loader}</script></body></html>\n"
    )


def _write(output: Path, text: str) -> None:
    """Write ``output`` atomically (a temporary file renamed over it), creating its directory."""
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"cannot write the report {str(output)!r} (a part of its path is a file, not a directory); "
            "pass -o with a writable path."
        ) from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        space = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        fix = "free space there or pass -o on another filesystem" if space else "pass -o with a writable path"
        error = OutputSpaceError if space else OutputError
        raise error(
            f"cannot write the report {str(output)!r} ({exc.strerror or type(exc).__name__}); {fix}."
        ) from None


def write_report(run_dirs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]) -> Path:
    """Render the runs in ``run_dirs`` (one run, or a comparison of several) to the HTML file ``output``; a
    sweep directory (it holds sweep.csv) among them is drawn as a sweep, a capacity directory (capacity.json)
    as a capacity search."""
    if not run_dirs:
        raise FramescopeError("no run directory given; pass at least one directory made by framescope run.")
    path = Path(output)
    if path.is_dir():
        raise OutputError(f"{str(path)!r} is a directory; pass -o with a file name, e.g. {path}/report.html.")
    from framescope.capacity import is_capacity_dir, load_capacity
    from framescope.sweep import is_sweep_dir, load_sweep

    sweeps = [load_sweep(d) for d in run_dirs if is_sweep_dir(Path(d))]
    capacities = [load_capacity(d) for d in run_dirs if is_capacity_dir(Path(d))]
    searches = {Path(d) for d in run_dirs if is_sweep_dir(Path(d)) or is_capacity_dir(Path(d))}
    runs = [r for d in run_dirs if Path(d) not in searches for r in launched_runs(Path(d))]
    _write(path, render_report(load_runs(runs), sweeps, capacities))
    return path
