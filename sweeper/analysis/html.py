"""``report/index.html``: one self-contained page that works offline: images embedded as data
URIs, and Optuna's interactive figures with plotly.js inlined once."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.analysis.optuna_plots import Figure

__all__ = ["OptunaSection", "cell", "page"]


@dataclass(frozen=True)
class OptunaSection:
    """The page's Optuna part: its figures (drawn or not), the command that opens the study
    in optuna-dashboard, and the Pareto front's trials (None with one objective)."""

    figures: Sequence[Figure]
    dashboard: str
    pareto: pd.DataFrame | None = None

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem} td,th{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f4f4f4} img{max-width:100%;display:block;margin:.5rem 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4rem .8rem;margin:.3rem 0}
pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:.8rem}
h3{font-size:1rem;margin:1.5rem 0 .3rem} .skip{color:#777;font-style:italic}
"""


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(f"<td>{html.escape(cell(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def cell(value: Any) -> str:
    """One table cell as text; a missing value is an empty cell, never "nan" or "None"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _image(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<h3>{html.escape(title)}</h3>"
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')


@cache
def _plotly_js() -> str:
    """plotly.js, inlined once, so the page works offline."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _figure(fig: Figure, pareto: pd.DataFrame | None) -> str:
    head = f"<h3>{html.escape(fig.title)}</h3>"
    if fig.plotly is None:
        return f'{head}<p class="skip">not drawn: {html.escape(fig.skipped)}</p>'
    div = fig.plotly.to_html(full_html=False, include_plotlyjs=False, div_id=f"optuna-{fig.name}",
                             default_height="480px")
    png = html.escape(fig.png.name if fig.png else "")
    table = (f"<p>The trials on the front:</p>{_table(pareto)}"
             if fig.name == "pareto_front" and pareto is not None else "")
    return f'{head}{div}<p>PNG: <a href="{png}">{png}</a></p>{table}'


def _optuna(section: OptunaSection | None) -> tuple[str, str]:
    """(the head's script, the body's section) for Optuna's figures."""
    if section is None:
        return "", ""
    script = (f"<script>{_plotly_js()}</script>"
              if any(f.plotly is not None for f in section.figures) else "")
    body = (f"<h2>Optuna</h2><p>Every trial, interactively, in optuna-dashboard "
            f"(<code>pip install optuna-dashboard</code>): "
            f"<code>{html.escape(section.dashboard)}</code></p>"
            + "".join(_figure(f, section.pareto) for f in section.figures))
    return script, body


def page(title: str, facts: Mapping[str, str], notes: Sequence[str], top: pd.DataFrame,
         images: Sequence[tuple[Path, str]], space: pd.DataFrame, counts: pd.DataFrame,
         best_config: str, run_command: str, optuna: OptunaSection | None = None,
         cv: pd.DataFrame | None = None) -> str:
    script, optuna_html = _optuna(optuna)
    facts_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                         for k, v in facts.items())
    notes_html = "".join(f'<div class="note">{html.escape(n)}</div>' for n in notes) or "<p>none</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style>{script}</head><body>
<h1>{html.escape(title)}</h1>
<table>{facts_html}</table>
<h2>What next</h2>{notes_html}
<h2>Trials per status</h2>{_table(counts)}
{"<h2>Best configs by cross-validation</h2>" + _table(cv) if cv is not None else ""}
<h2>Best trials</h2>{_table(top)}
<h2>Search space</h2>{_table(space)}
{optuna_html}
{"<h2>Static plots (PNG)</h2>" if images else ""}{''.join(_image(p, t) for p, t in images)}
<h2>Best config</h2><p>Train from it: <code>{html.escape(run_command)}</code></p>
<pre>{html.escape(best_config)}</pre>
</body></html>
"""
