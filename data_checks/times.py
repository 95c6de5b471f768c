"""Reading a timestamp column: ISO text, a strptime pattern, or Unix epoch numbers; and the check that
the times read are plausible at all.

The rule (also in ``docs/data_sources.md``):

1. A column already typed as a date-time (Parquet, xlsx) is taken as it is (naive values are UTC).
2. ``timestamp_unit`` (``s``, ``ms``, ``us`` or ``ns``) declares epoch numbers; ``timestamp_format: "%s"``
   means epoch seconds. Values that are not numbers are unparseable (quarantined).
3. Otherwise, when more than half of the non-blank values are numbers (integers or digit strings, in CSV,
   JSON or Parquet), the column is epoch time and the unit is chosen by the magnitude of the median
   absolute value: below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else
   nanoseconds. (1e11 seconds is the year 5138; 1e11 milliseconds is 1973-03-03: the ranges do not
   overlap for any date between 1973 and 5138.)
4. Otherwise the values are date text: ISO 8601 or anything ``pandas.to_datetime`` reads (with
   ``timestamp_format``, exactly that strptime pattern); offsets are converted to UTC.

:func:`check_plausible` then stops a read whose times cannot be right: none of them between
1990-01-01 and tomorrow, or none readable at all. It names the range found and the likely unit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPOCH_UNITS: dict[str, int] = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# upper bounds of the median absolute value for each unit (rule 3 above)
UNIT_BOUNDS = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", np.inf))
PLAUSIBLE_FROM = pd.Timestamp("1990-01-01")
_INT64_MAX = float(np.iinfo(np.int64).max)


class TimeSettingError(ValueError):
    """The configured ``timestamp_format`` or ``timestamp_unit`` is not usable (the reader adds file and field)."""


@dataclass
class ParsedTimes:
    """``values``: naive UTC ``datetime64[ns]``, NaT where missing or unparseable (shape: one per input row).
    ``how``: how the column was read, in words (for messages and metadata). ``numbers``: the values as
    numbers where the column was read as epoch time, else None."""

    values: pd.Series
    how: str
    numbers: pd.Series | None = None


def unit_for_magnitude(median_abs: float) -> str:
    """The epoch unit rule 3 picks for a column whose median absolute value is ``median_abs``."""
    for unit, bound in UNIT_BOUNDS:
        if median_abs < bound:
            return unit
    return "ns"


def _as_numbers(values: pd.Series) -> pd.Series:
    """float64 per value: numbers and digit strings parse, anything else (text, lists, booleans) is NaN."""
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(np.nan, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    scalar = values.map(lambda v: v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None)
    return pd.to_numeric(scalar, errors="coerce").astype("float64")


def from_epoch(numbers: pd.Series, unit: str) -> pd.Series:
    """Epoch numbers in ``unit`` to naive UTC ``datetime64[ns]``; values outside the representable range
    (years 1678-2261) or not finite become NaT. Whole numbers convert exactly."""
    factor = EPOCH_UNITS[unit]
    x = numbers.to_numpy(dtype="float64")
    ok = np.isfinite(x) & (np.abs(x) * factor < _INT64_MAX)
    ns = np.zeros(len(x), dtype=np.int64)
    whole = ok & (x == np.round(x))
    ns[whole] = np.round(x[whole]).astype(np.int64) * factor
    frac = ok & ~whole
    ns[frac] = np.round(x[frac] * factor).astype(np.int64)
    out = pd.Series(pd.to_datetime(ns, unit="ns"), index=numbers.index)
    return out.where(ok).astype("datetime64[ns]")


def _text_times(values: pd.Series, fmt: str | None) -> pd.Series:
    scalar = values.map(lambda v: v if isinstance(v, str) else (None if v is None else str(v)), na_action="ignore")
    try:
        ts = pd.to_datetime(scalar, errors="coerce", format=fmt if fmt else "mixed", utc=True)
    except ValueError as exc:  # a bad directive in the pattern
        raise TimeSettingError(f"timestamp_format {fmt!r} is not a usable strptime pattern ({exc}); set it like "
                               "'%Y-%m-%d %H:%M:%S', or set timestamp_unit: s or ms for epoch numbers") from exc
    ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[ns]")


def parse_times(values: pd.Series, fmt: str | None = None, unit: str | None = None) -> ParsedTimes:
    """Read one timestamp column by the module's rule. Raises :class:`TimeSettingError` for an unknown
    unit or a pattern that cannot be used."""
    if unit is not None and unit not in EPOCH_UNITS:
        raise TimeSettingError(f"timestamp_unit {unit!r} is not one of {sorted(EPOCH_UNITS)}")
    if fmt is not None and fmt.strip() == "%s":
        unit, fmt = unit or "s", None
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        inside = ts.isna() | ((ts >= pd.Timestamp.min) & (ts <= pd.Timestamp.max))
        return ParsedTimes(ts.where(inside).astype("datetime64[ns]"), "date-time values")
    if unit is not None:
        nums = _as_numbers(values)
        return ParsedTimes(from_epoch(nums, unit), f"epoch {UNIT_NAMES[unit]} (timestamp_unit: {unit})", nums)
    if fmt is None:
        nums = _as_numbers(values)
        present = int(_present(values).sum())
        n_numbers = int(nums.notna().sum())
        if present and n_numbers * 2 > present:
            median = float(np.nanmedian(np.abs(nums.to_numpy())))
            unit = unit_for_magnitude(median)
            return ParsedTimes(from_epoch(nums, unit),
                               f"epoch {UNIT_NAMES[unit]} (detected: median magnitude {median:.3g})", nums)
    return ParsedTimes(_text_times(values, fmt), f"date text (format {fmt!r})" if fmt else "date text")


def _present(values: pd.Series) -> pd.Series:
    """True where a raw value is not missing or blank."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.notna()
    text = values.astype("string").str.strip()
    return (text.notna() & (text != "")).fillna(False).astype(bool)


def implausible_reason(parsed: ParsedTimes, raw: pd.Series, now: pd.Timestamp | None = None) -> str | None:
    """Why a column's times cannot be right (none readable, or none between 1990-01-01 and tomorrow), with
    the range found and what to set; None when at least one time is plausible or the column is blank."""
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None)
    latest = now + pd.Timedelta(days=1)
    ts = parsed.values
    present = _present(raw)
    if not present.any():
        return None
    got = ts[ts.notna()]
    if got.empty:
        example = str(raw[present].iloc[0])[:40]
        hint = _unit_hint(parsed.numbers, now) or ("set timestamp_format to the pattern the file uses "
                                                   "(e.g. '%d/%m/%Y %H:%M'), or timestamp_unit: s or ms for epoch "
                                                   "numbers")
        return (f"none of the {int(present.sum()):,} values could be read as a time (read as {parsed.how}; first "
                f"value {example!r}): {hint}")
    if ((got >= PLAUSIBLE_FROM) & (got <= latest)).any():
        return None
    hint = _unit_hint(parsed.numbers, now) or "check that the column mapping points at the time column"
    return (f"every time read is implausible: they range from {got.min()} to {got.max()} (read as {parsed.how}), "
            f"none between {PLAUSIBLE_FROM.date()} and today: {hint}")


def _unit_hint(numbers: pd.Series | None, now: pd.Timestamp) -> str | None:
    """What to set when the numbers make sense in another epoch unit or as YYYYMMDD dates."""
    if numbers is None or numbers.notna().sum() == 0:
        return None
    known = numbers.dropna()
    median = float(known.median())
    if ((known >= 19000101) & (known <= 21001231) & (known == known.round())).all():
        as_date = pd.to_datetime(known.astype("int64").astype(str), format="%Y%m%d", errors="coerce")
        if as_date.notna().all() and PLAUSIBLE_FROM <= as_date.median() <= now:
            return "the values look like dates written YYYYMMDD: set timestamp_format: '%Y%m%d'"
    for unit, factor in EPOCH_UNITS.items():
        ns = median * factor
        if abs(ns) < _INT64_MAX and PLAUSIBLE_FROM <= pd.Timestamp(int(ns), unit="ns") <= now:
            return (f"the values look like epoch {UNIT_NAMES[unit]} (median {median:.0f} is "
                    f"{pd.Timestamp(int(ns), unit='ns').date()}): set timestamp_unit: {unit}")
    return None
