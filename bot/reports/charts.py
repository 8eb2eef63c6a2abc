"""The dashboard's charts, drawn on the server with matplotlib (the object API: no pyplot state, so
requests in several threads never share a figure) and returned as SVG text. Nothing is fetched from
anywhere by the browser, so the page works offline under its strict Content-Security-Policy.
"""

from __future__ import annotations

import io
from typing import Any

from bot.core.holdout import HOLDOUT, TREATMENT

COLOURS = {TREATMENT: "#1f5fd6", HOLDOUT: "#8a94a6"}
BETTER, WORSE, NEUTRAL = "#137333", "#b42318", "#5d6675"
LIMIT = 100.0  # the effects axis spans -100 % .. +100 %; a larger change is drawn at the edge with its number


def _svg(figure: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "doorstep"}):  # text as text; stable ids
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96)
    figure.patch.set_alpha(0)
    return figure


def effects(rows: list[dict[str, Any]]) -> str | None:
    """A forest plot: each KPI's change against the holdout in % of the holdout's value, with its 95 % interval.
    None when no KPI has both groups yet."""
    shown = [r for r in rows if r.get("difference") is not None and r.get("holdout") and r.get("ci_low") is not None]
    if not shown:
        return None
    figure = _figure(7.5, 0.45 * len(shown) + 1.1)
    axes = figure.add_subplot()
    for y, row in enumerate(reversed(shown)):
        base = abs(float(row["holdout"]))
        centre, low, high = (100 * float(row[k]) / base for k in ("difference", "ci_low", "ci_high"))
        colour = NEUTRAL
        if row.get("significant") and row.get("better"):
            colour = BETTER if (centre < 0) == (row["better"] == "lower") else WORSE
        clip = max(-LIMIT, min(LIMIT, low)), max(-LIMIT, min(LIMIT, high))
        axes.plot(clip, [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
        if abs(centre) <= LIMIT:
            axes.plot([centre], [y], "o", color=colour, markersize=6)
        else:
            edge = LIMIT if centre > 0 else -LIMIT
            axes.plot([edge], [y], ">" if centre > 0 else "<", color=colour, markersize=7)
            axes.annotate(f"{centre:+.0f} %", (edge, y), xytext=(-6 if centre > 0 else 6, 6),
                          textcoords="offset points", ha="right" if centre > 0 else "left", fontsize=8, color=colour)
    axes.set_xlim(-LIMIT * 1.05, LIMIT * 1.05)
    axes.axvline(0, color="#1d2330", linewidth=0.8)
    axes.set_yticks(range(len(shown)), [r["label"] for r in reversed(shown)], fontsize=9)
    axes.set_xlabel("treatment against holdout, % of the holdout's value (95 % interval)", fontsize=9)
    axes.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure)


def weekly(weeks: list[dict[str, Any]], key: str, label: str) -> str | None:
    """One KPI week by week, a line per group; weeks not compared yet (still maturing) are drawn hollow."""
    points = [(w["week_start"], w["kpis"][key], w["mature"]) for w in weeks]
    if not any(v[TREATMENT] is not None or v[HOLDOUT] is not None for _, v, _ in points):
        return None
    figure = _figure(5.6, 2.6)
    axes = figure.add_subplot()
    labels = [week[5:] for week, _, _ in points]
    for arm in (TREATMENT, HOLDOUT):
        xs = [i for i, (_, v, _) in enumerate(points) if v[arm] is not None]
        ys = [points[i][1][arm] for i in xs]
        axes.plot(xs, ys, "-", color=COLOURS[arm], linewidth=1.8, label=arm)
        mature = [i for i in xs if points[i][2]]
        axes.plot(mature, [points[i][1][arm] for i in mature], "o", color=COLOURS[arm], markersize=4)
        young = [i for i in xs if not points[i][2]]
        axes.plot(young, [points[i][1][arm] for i in young], "o", markerfacecolor="white", color=COLOURS[arm],
                  markersize=4)
    axes.set_xticks(range(len(labels)), labels, fontsize=8, rotation=45 if len(labels) > 8 else 0)
    axes.set_title(label, fontsize=10, loc="left")
    axes.tick_params(axis="y", labelsize=8)
    axes.legend(fontsize=8, frameon=False)
    axes.set_ylim(bottom=0)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure)


def reply_rates(rows: list[dict[str, Any]], by: str) -> str | None:
    """Reply rate per channel or journey, with 95 % Wilson intervals."""
    shown = [r for r in rows if r.get("rate") is not None]
    if not shown:
        return None
    figure = _figure(5.6, 0.35 * len(shown) + 1.0)
    axes = figure.add_subplot()
    ys = range(len(shown))
    rates = [100 * r["rate"] for r in shown]
    errors = [[100 * (r["rate"] - r["ci_low"]) for r in shown], [100 * (r["ci_high"] - r["rate"]) for r in shown]]
    axes.barh(list(ys), rates, xerr=errors, color=COLOURS[TREATMENT], alpha=0.85, error_kw={"ecolor": "#1d2330",
                                                                                           "capsize": 3})
    axes.set_yticks(list(ys), [f"{r[by]} ({r['sent']:,})" for r in shown], fontsize=9)
    axes.set_xlabel("% answered within a day (messages sent)", fontsize=9)
    axes.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure)
