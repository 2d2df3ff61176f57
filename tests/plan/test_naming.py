"""Run names are readable, stable and free of float noise."""

import pytest

from physweep.plan.knobs import format_value, same_value


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.0e-4, "2e-4"), (3e-4, "3e-4"), (4.5e-4, "4.5e-4"), (0.05, "0.05"), (0.9995, "0.9995"),
     (0.1 + 0.2, "0.3"), (1.0, "1.0"), (16, "16"), (True, "true"), (False, "false"),
     ("sincos", "sincos"), (0.30000000000000004, "0.3")],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_same_value_ignores_float_noise():
    assert same_value(0.30000000000000004, 0.3)
    assert not same_value(True, 1)
    assert not same_value(0.5, 0.75)
