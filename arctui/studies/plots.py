"""``arctui study report STUDY --plots DIR``: PNG figures and a markdown report for an iteration note.

    paths = write_report(store, "iteration33", Path("notes/iteration33"), baseline=None)

Writes into DIR: ``loss.png`` (the training loss curves of every run, overlaid), ``speed.png``
(s/step (median) bars, and peak VRAM bars when any run used a GPU), ``accuracy.png`` (when any run was
evaluated) and ``report.md``: the study table in markdown with the figures embedded under it. Labels
are those of the study table (:mod:`arctui.studies.table`). matplotlib runs headless (Agg), imported
only here.
"""

from __future__ import annotations

from pathlib import Path

from arctui.studies.table import (
    ACCURACY,
    PEAK_VRAM,
    S_PER_STEP,
    StudyTable,
    failure_reason,
    read_study_table,
    study_markdown,
)
from runner.errors import UserError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plots needs matplotlib: pip install 'matplotlib>=3.7'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, table: StudyTable, key: str, label: str) -> None:
    names = [r.variant for r in table.rows]
    values = [r.figures.get(key) for r in table.rows]
    heights = [v if v is not None else 0.0 for v in values]
    colors = ["#4c72b0" if i != table.baseline else "#dd8452" for i in range(len(names))]
    bars = ax.bar(range(len(names)), heights, color=colors)
    for bar, value, row in zip(bars, values, table.rows, strict=True):
        text = "-" if value is None else f"{value:.3g}"
        if value is None and row.run.status != "completed":
            text = "out of memory" if failure_reason(row.error) == "out of memory" else row.run.status
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(f"{label} (baseline in orange)", fontsize=10)


def write_report(store, study_ref, out_dir: Path, *, baseline: str | None = None) -> list[Path]:
    """Write the PNGs and ``report.md`` into ``out_dir`` (created); returns the files written."""
    plt = _pyplot()
    table = read_study_table(store, study_ref, baseline=baseline)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--plots: cannot create {out_dir}: {exc.strerror or exc}; choose another folder") from None
    written: list[Path] = []
    images: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    plotted = 0
    for row in table.rows:
        series = store.metric_series(int(row.run.id), "loss", max_points=2000)
        if series:
            ax.plot([p.step for p in series], [p.value for p in series], label=row.variant, linewidth=1.2)
            plotted += 1
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"study {table.name}: training loss", fontsize=10)
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no loss logged yet", ha="center", va="center", transform=ax.transAxes)
    written.append(_save(fig, plt, out_dir / "loss.png"))
    images.append(("training loss", "loss.png"))

    with_vram = any(r.figures.get(PEAK_VRAM.key) is not None for r in table.rows)
    fig, axes = plt.subplots(1, 2 if with_vram else 1, figsize=(11 if with_vram else 6.5, 4.5), squeeze=False)
    _bars(axes[0][0], table, S_PER_STEP.key, S_PER_STEP.label)
    if with_vram:
        _bars(axes[0][1], table, PEAK_VRAM.key, f"{PEAK_VRAM.label} (GB)")
    written.append(_save(fig, plt, out_dir / "speed.png"))
    images.append(("speed and memory", "speed.png"))

    if any(r.figures.get(ACCURACY.key) is not None for r in table.rows):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        _bars(ax, table, ACCURACY.key, ACCURACY.label)
        written.append(_save(fig, plt, out_dir / "accuracy.png"))
        images.append(("accuracy", "accuracy.png"))

    parts = [study_markdown(table)]
    parts += [f"![{title}]({name})\n" for title, name in images]
    report = out_dir / "report.md"
    report.write_text("\n".join(parts), encoding="utf-8")
    written.append(report)
    return written


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
