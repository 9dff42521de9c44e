import math

import pytest

from openrecipe.train.schedule import phase_steps, wsd_lr

# total 20 steps, warmup 0.1 -> 2 steps, decay 0.25 -> 5 steps (decay covers steps 15..19)
ARGS = dict(total_steps=20, lr=1.0, min_lr=0.1, warmup_fraction=0.1, decay_fraction=0.25)


def test_phase_steps_round_to_whole_steps():
    assert phase_steps(20, 0.1, 0.25) == (2, 5)
    assert phase_steps(60, 0.1, 0.2) == (6, 12)


def test_warmup_is_linear_from_lr_over_warmup_steps():
    assert wsd_lr(0, shape="linear", **ARGS) == pytest.approx(0.5)
    assert wsd_lr(1, shape="linear", **ARGS) == pytest.approx(1.0)


def test_stable_phase_holds_peak():
    assert [wsd_lr(s, shape="cosine", **ARGS) for s in (2, 9, 14)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        # step 15 is decay progress 1/5, step 17 is 3/5; last step (19) reaches min_lr
        ("linear", [0.1 + 0.9 * 0.8, 0.1 + 0.9 * 0.4, 0.1]),
        ("minus_sqrt", [0.1 + 0.9 * (1 - math.sqrt(0.2)), 0.1 + 0.9 * (1 - math.sqrt(0.6)), 0.1]),
        (
            "cosine",
            [
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)),
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.6)),
                0.1,
            ],
        ),
    ],
)
def test_decay_shapes(shape, expected):
    got = [wsd_lr(s, shape=shape, **ARGS) for s in (15, 17, 19)]
    assert got == pytest.approx(expected)
    # minus_sqrt at 1/5: 0.1 + 0.9 * 0.5528 = 0.5975 (hand value)
    if shape == "minus_sqrt":
        assert got[0] == pytest.approx(0.59751, abs=1e-5)


def test_no_warmup_and_no_decay():
    assert wsd_lr(0, 10, 2.0, 0.0, 0.0, 0.0, "linear") == 2.0
    assert wsd_lr(9, 10, 2.0, 0.0, 0.0, 0.0, "linear") == 2.0


def test_rejects_bad_shape_and_step():
    with pytest.raises(ValueError, match="decay shape"):
        wsd_lr(0, shape="exp", **ARGS)
    with pytest.raises(ValueError, match="outside"):
        wsd_lr(20, shape="linear", **ARGS)
