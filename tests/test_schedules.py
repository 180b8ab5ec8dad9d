"""Schedules: values at and around the window boundaries, update steps, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsekit import schedules
from sparsekit.schedules import Constant, Cubic, OneShot, steps


def test_cubic_boundaries_1000_steps():
    # window [250, 750]; hand values: p = (t - 250) / 500, s = 0.8 * (1 - (1 - p)^3)
    s = Cubic(0.8)
    assert s.window(1000) == (250, 750)
    assert float(s.at(0, 1000)) == 0.0
    assert float(s.at(249, 1000)) == 0.0
    assert float(s.at(250, 1000)) == 0.0
    assert float(s.at(251, 1000)) == pytest.approx(0.8 * (1 - (1 - 1 / 500) ** 3), rel=1e-6)
    assert float(s.at(500, 1000)) == pytest.approx(0.8 * (1 - 0.5**3), rel=1e-6)
    assert float(s.at(700, 1000)) == pytest.approx(0.8 * (1 - 0.1**3), rel=1e-6)
    assert float(s.at(749, 1000)) <= np.float32(0.8)  # 1 - 0.002^3 rounds to 1 in float32
    assert float(s.at(750, 1000)) == np.float32(0.8)
    assert float(s.at(999, 1000)) == np.float32(0.8)


def test_at_is_jit_safe():
    f = jax.jit(lambda t: Cubic(0.5).at(t, 400))
    for t in [0, 99, 100, 101, 200, 299, 300, 399]:
        assert float(f(t)) == pytest.approx(float(Cubic(0.5).at(t, 400)), rel=1e-6, abs=0)


def test_steps_rounds_up_or_to_nearest():
    assert steps(0.25, 10) == 3 and steps(0.75, 100) == 75  # 75.00000000000001 is 75
    assert steps(0.05, 21, "nearest") == 1 and steps(0.05, 21) == 2  # 1.05 steps
    assert steps(0.05, 10, "nearest") == 0 and steps(0.05, 30, "nearest") == 2  # half to even
    with pytest.raises(ValueError, match="rounding must be"):
        steps(0.5, 10, "down")


def test_warmup_uses_nearest_steps():
    # the LR schedule of every stored run: warmup = round(0.05 * 21) = 1 step, peak at step 1
    from sparsekit.optim import learning_rate

    lr = learning_rate(1.0, 21, warmup=0.05, decay_to=0.0)
    assert float(lr(0)) == 0.0 and float(lr(1)) == pytest.approx(1.0)


def test_window_rounds_up_for_non_integer_boundaries():
    # 0.25 * 10 = 2.5 -> step 3; 0.75 * 10 = 7.5 -> step 8 (first step at or after the end)
    s = Cubic(0.5)
    assert s.window(10) == (3, 8)
    assert float(s.at(2, 10)) == 0.0
    assert float(s.at(8, 10)) == np.float32(0.5)
    assert float(s.at(7, 10)) < 0.5


def test_initial_sparsity_jumps_at_start():
    s = Cubic(0.9, initial=0.3)
    assert float(s.at(249, 1000)) == 0.0
    assert float(s.at(250, 1000)) == pytest.approx(0.3)
    assert float(s.at(750, 1000)) == pytest.approx(0.9)


def test_monotone_non_decreasing():
    vals = np.asarray(jax.vmap(lambda t: Cubic(0.875).at(t, 1000))(jnp.arange(1000)))
    assert np.all(np.diff(vals) >= 0)


def test_update_steps():
    s = Cubic(0.5, every=100)
    upd = [t for t in range(1000) if bool(s.is_update(t, 1000))]
    assert upd == [250, 350, 450, 550, 650, 750]
    # the end step is always an update, even off the `every` grid
    upd = [t for t in range(100) if bool(Cubic(0.5, every=30).is_update(t, 100))]
    assert upd == [25, 55, 75]


def test_oneshot_and_constant():
    one = OneShot(0.75, start=0.5)
    assert one.window(100) == (50, 50)
    assert float(one.at(49, 100)) == 0.0
    assert float(one.at(50, 100)) == pytest.approx(0.75)
    assert [t for t in range(100) if bool(one.is_update(t, 100))] == [50]
    const = Constant(0.5)
    assert float(const.at(0, 100)) == pytest.approx(0.5)
    assert [t for t in range(100) if bool(const.is_update(t, 100))] == [0]


def test_average_density_of_the_paper_schedule():
    # integral of the 25-75% cubic ramp: density 1 - 0.625 S (float32 schedule values)
    for target in [0.5, 0.75, 0.875]:
        assert Cubic(target).average_density() == pytest.approx(1 - 0.625 * target, abs=1e-6)
    assert Constant(0.5).average_density() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 1.0}, "target"),
        ({"target": -0.1}, "target"),
        ({"target": 0.5, "start": 0.8, "end": 0.2}, "end must be >= start"),
        ({"target": 0.5, "end": 1.5}, "end"),
        ({"target": 0.5, "initial": 0.7}, "initial"),
        ({"target": 0.5, "every": 0}, "every"),
    ],
)
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Cubic(**kwargs)


def test_make_by_name():
    assert schedules.make("cubic", target=0.5) == Cubic(0.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        schedules.make("linear", target=0.5)
