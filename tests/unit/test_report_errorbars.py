"""The report's score chart (scores.png) draws each score's standard error as an error bar, and
names the metrics that have none instead of drawing them as if exact."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.container import BarContainer

from openrecipe.evaluate.compare import score_figure

SCORES = {
    "base": {
        "arc_easy": {"acc": 0.29, "acc_stderr": 0.0456, "acc_norm": 0.28, "n": 100},
        "gsm8k_bpb": {"bits_per_byte": 8.6, "n": 100},
    },
    "sft": {
        "arc_easy": {"acc": 0.31, "acc_stderr": 0.0465, "acc_norm": 0.3, "n": 100},
        "gsm8k_bpb": {"bits_per_byte": 8.1, "n": 100},
    },
}


def _bars(ax) -> list[tuple[float, float | None]]:
    """(height, half-length of its error bar or None) of each bar drawn."""
    found = []
    for container in ax.containers:
        if not isinstance(container, BarContainer):
            continue
        (patch,) = container.patches
        half = None
        if container.errorbar is not None:
            (segment,) = container.errorbar.lines[2][0].get_segments()
            half = float(segment[1][1] - segment[0][1]) / 2
        found.append((round(patch.get_height(), 6), None if half is None else round(half, 6)))
    return found


def test_each_bar_carries_its_standard_error() -> None:
    fig = score_figure(SCORES, [])
    accuracy, bpb = fig.axes
    assert sorted(_bars(accuracy)) == [
        (0.28, None),
        (0.29, 0.0456),
        (0.3, None),
        (0.31, 0.0465),
    ]
    assert "± 1 standard error; no standard error recorded for acc_norm" in accuracy.get_title()
    assert sorted(_bars(bpb)) == [(8.1, None), (8.6, None)]
    assert bpb.get_title().endswith("(no standard error recorded for bits_per_byte)")
    plt.close(fig)
