"""One-line checks of single config values; every message names the key, the value and what
would be valid (a range, the valid names, the closest name)."""

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from mnist_jax.core.errors import ConfigError


def closest(value: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to a misspelt `value`, or None: every "did you mean" uses it."""
    close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(value: str, valid: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    guess = closest(value, valid)
    return f" (did you mean {guess!r}?)" if guess else ""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_range(
    key: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False,
    hi_open: bool = False, integer: bool = False,
) -> None:  # fmt: skip
    """`key=value` must be a (finite) number in the interval; the message shows the interval."""
    ok = (_int(value) if integer else _number(value)) and (
        (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    )
    if not ok:
        kind = "an integer" if integer else "a number"
        interval = (
            ("(" if lo_open else "[") + f"{lo:g}, " + (f"{hi:g}" if hi != math.inf else "inf")
            + (")" if hi_open or hi == math.inf else "]")
        )  # fmt: skip
        raise ConfigError(f"{key}={value!r} is not {kind} in {interval}")


def check_choice(key: str, value: Any, valid: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(
            f"{key}={value!r} is not one of {', '.join(valid)}{suggest(value, valid)}"
        )


def check_rate(key: str, value: Any) -> None:
    check_range(key, value, 0, 1, hi_open=True)


def check_sizes(key: str, values: Any, *, allow_empty: bool = True) -> None:
    """A list of positive integers (layer widths, channels, kernel sizes)."""
    ok = isinstance(values, Sequence) and not isinstance(values, str)
    ok = ok and all(_int(v) and v > 0 for v in values)
    if not ok or (not allow_empty and not values):
        what = "a list of positive integers" + ("" if allow_empty else " (at least one)")
        raise ConfigError(f"{key}={values!r} is not {what}")
