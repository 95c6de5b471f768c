"""The benchmark command's data: a built-in dataset name or a source config file, read, cleaned and split.

A source config file holds what a user writes under ``ops: raw_tables: config:`` in Dagster run config (the fields
of ``data_checks.sources.SourceSpec``), either as that bare mapping or inside the full run-config nesting; in the
latter form, ``ops: training_split: config:`` (when present) sets the split as it does for the pipeline. Relative
paths in the file are read from the current directory, as Dagster reads them; a path not found there but found
beside the source file is read from the source file's folder.

The split is ``training.splits.choose_strategy``'s choice for the data's shape unless a strategy is given.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("COBUY_DATASETS", ROOT.parent / "shared" / "datasets"))
# the built-in names: shortcuts for a source (path under DATASETS); their split is chosen as for any source
BUILTIN_SOURCES: dict[str, dict[str, str]] = {
    "gowalla": {"kind": "lightgcn", "path": "gowalla"},
    "online_retail": {"kind": "online_retail", "path": "online_retail/online_retail.csv.gz"},
    "synthetic": {"kind": "synthetic"},
}
SPLIT_STRATEGIES = ("auto", "fixed", "temporal", "leave_last_basket", "customer_holdout", "basket_completion")
SOURCE_PATH_FIELDS = ("path", "catalog_path")


class BenchmarkInputError(ValueError):
    """A problem with what the user gave the benchmark command (names, files, settings); the message says what to
    set."""


@dataclass
class BenchmarkDataset:
    """``name``: the label in result file names; ``source``: ``SourceSpec`` fields; ``split``: ``SplitConfig`` fields,
    ``strategy`` ``"auto"`` for ``choose_strategy``; ``builtin``: a built-in name (its tuned defaults apply)."""

    name: str
    source: dict[str, Any]
    split: dict[str, Any] = field(default_factory=lambda: {"strategy": "auto"})
    builtin: bool = False
    source_file: str | None = None


@dataclass
class PreparedData:
    """The dataset as models see it. ``train``: ``training.data.InteractionData`` of the split's train rows;
    ``test``: (n_users, n_items) CSR of held-out pairs; ``chosen_because``: why this split."""

    cleaned: Any
    split: Any
    train: Any
    test: Any
    chosen_because: str


def dataset_name(dataset: str | BenchmarkDataset) -> str:
    return dataset.name if isinstance(dataset, BenchmarkDataset) else dataset


def builtin_dataset(name: str) -> BenchmarkDataset:
    if name not in BUILTIN_SOURCES:
        raise BenchmarkInputError(f"unknown dataset {name!r}: the built-in names are {', '.join(BUILTIN_SOURCES)}; "
                                  f"for other data, describe it in a source file and pass --source FILE")
    source = dict(BUILTIN_SOURCES[name])
    if "path" in source:
        source["path"] = str(DATASETS / source["path"])
        if not Path(source["path"]).exists():
            raise BenchmarkInputError(f"dataset {name!r} not found at {source['path']} (set COBUY_DATASETS to the "
                                      f"folder holding it, or pass --source FILE)")
    return BenchmarkDataset(name, source, builtin=True)


def _mapping(value: Any, where: str, file: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BenchmarkInputError(f"{file}: {where} must be a mapping of settings, found {type(value).__name__}")
    return value


def _check_fields(given: dict[str, Any], valid: list[str], where: str, file: Path) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise BenchmarkInputError(f"{file}: unknown field(s) {', '.join(map(repr, unknown))} in {where}; the valid "
                                  f"fields are {', '.join(valid)}")


def _resolve_path(value: str, file: Path) -> str:
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists() or not (file.parent / p).exists():
        return str(p)
    return str(file.parent / p)


def read_source_file(path: str | Path, name: str | None = None) -> BenchmarkDataset:
    """The dataset a source config file describes (see the module docstring); errors name the file and field."""
    import yaml

    from data_checks.sources import SourceKind, SourceSpec
    from training.splits import SplitConfig

    file = Path(path)
    if not file.is_file():
        raise BenchmarkInputError(f"source file not found: {file} (write the mapping you would put under "
                                  f"ops: raw_tables: config: in Dagster run config, e.g. 'kind: events' and "
                                  f"'path: shop.csv', and pass its path)")
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise BenchmarkInputError(f"{file}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    doc = _mapping(doc, "the file", file)
    split: dict[str, Any] = {}
    if "ops" in doc:  # the full run-config nesting
        ops = _mapping(doc["ops"], "ops", file)
        if "raw_tables" not in ops:
            raise BenchmarkInputError(f"{file}: has 'ops' but no 'ops: raw_tables: config:' describing the source")
        source = _mapping(_mapping(ops["raw_tables"], "ops.raw_tables", file).get("config"),
                          "ops.raw_tables.config", file)
        split = _mapping(_mapping(ops.get("training_split"), "ops.training_split", file).get("config"),
                         "ops.training_split.config", file)
        where = "ops.raw_tables.config"
    elif "raw_tables" in doc:
        source = _mapping(_mapping(doc["raw_tables"], "raw_tables", file).get("config"), "raw_tables.config", file)
        where = "raw_tables.config"
    else:
        source, where = doc, "the source mapping"
    _check_fields(source, [f.name for f in dataclasses.fields(SourceSpec)], where, file)
    _check_fields(split, [f.name for f in dataclasses.fields(SplitConfig)], "ops.training_split.config", file)
    kinds = get_args(SourceKind)
    if "kind" not in source and any(source.get(k) for k in SOURCE_PATH_FIELDS):
        raise BenchmarkInputError(f"{file}: {where} names a path but no kind; set kind to one of {', '.join(kinds)}")
    kind = source.get("kind", "synthetic")
    if kind not in kinds:
        raise BenchmarkInputError(f"{file}: kind {kind!r} is not a source kind; set kind to one of {', '.join(kinds)}")
    source = dict(source)
    for key in SOURCE_PATH_FIELDS:
        if source.get(key):
            source[key] = _resolve_path(str(source[key]), file)
    if kind != "synthetic":
        if not source.get("path"):
            raise BenchmarkInputError(f"{file}: kind {kind!r} needs 'path' (the file or folder to read)")
        for key in SOURCE_PATH_FIELDS:
            if source.get(key) and not Path(source[key]).exists():
                raise BenchmarkInputError(f"{file}: {key} {source[key]!r} does not exist (relative paths are read "
                                          f"from the current directory {Path.cwd()}, else beside the source file)")
    split = {"strategy": "auto", **split}
    if split["strategy"] not in SPLIT_STRATEGIES:
        raise BenchmarkInputError(f"{file}: split strategy {split['strategy']!r} is unknown; set one of "
                                  f"{', '.join(SPLIT_STRATEGIES)}")
    return BenchmarkDataset(name or file.stem, source, split, builtin=False, source_file=str(file))


def resolve_dataset(dataset: str | None = None, source: str | None = None, name: str | None = None,
                    split: str | None = None) -> BenchmarkDataset:
    """The dataset the command names: a built-in ``dataset`` or a ``source`` file (exactly one); ``split``, when
    given, overrides the strategy (else the source file's, else ``auto``)."""
    if bool(dataset) == bool(source):
        raise BenchmarkInputError("name the data with exactly one of --dataset (built-in: "
                                  f"{', '.join(BUILTIN_SOURCES)}) or --source FILE")
    d = builtin_dataset(dataset) if dataset else read_source_file(source, name)
    if name:
        d.name = name
    if split:
        if split not in SPLIT_STRATEGIES:
            raise BenchmarkInputError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_STRATEGIES)}")
        d.split = {**d.split, "strategy": split}
    return d


def prepare(dataset: str | BenchmarkDataset) -> PreparedData:
    """Read, clean and split a dataset (a built-in name or a ``BenchmarkDataset``). The split also carries
    ``fit``/``validation`` (carved from train) for tuning."""
    from data_checks.cleaning import clean
    from data_checks.sources import SourceSpec, read_source
    from training.data import build_interaction_data
    from training.splits import SplitConfig, choose_strategy, make_split

    d = builtin_dataset(dataset) if isinstance(dataset, str) else dataset
    cleaned = clean(read_source(SourceSpec(**d.source)))
    settings = dict(d.split)
    if settings.get("strategy", "auto") == "auto":
        settings["strategy"], why = choose_strategy(cleaned.interactions)
    else:
        why = "set by --split or the source file"
    try:
        split = make_split(cleaned.interactions, SplitConfig(**settings))
    except ValueError as e:
        raise BenchmarkInputError(f"{d.name}: {e}") from None
    train = build_interaction_data(split.train, cleaned.items["item_id"])
    return PreparedData(cleaned, split, train, train.matrix_for(split.test), why)


def load_dataset(dataset: str | BenchmarkDataset):
    """Read, clean and split a dataset; returns (clean result, split, train data, test matrix)."""
    p = prepare(dataset)
    return p.cleaned, p.split, p.train, p.test


def require_temporal(split: Any, what: str, why: str = "") -> None:
    """``what`` evaluates on a time cut: stop with the reason when the dataset's split (``training.splits.Split``)
    has none."""
    if split.cutoff is None:
        raise BenchmarkInputError(
            f"{what} evaluates items first sold after a time cut, so it needs the temporal split; this data's split "
            f"is {split.strategy!r}{f' ({why})' if why else ''}. Use data with a time on every row, or "
            f"--split temporal where it has one")
