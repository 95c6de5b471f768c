"""Customer ids are pseudonymised at ingestion: keyed, stable, and nowhere in any output or log."""
from __future__ import annotations

import copy
import gzip
import json
import logging
import re
import stat
import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from data_checks.cleaning import clean
from data_checks.privacy import (
    PseudonymKeyError,
    load_or_create_key,
    pseudonymize_id,
    pseudonymize_ids,
    pseudonymize_tables,
)
from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.resources import Pseudonymizer
from tests.conftest import ONLINE_RETAIL, need
from tests.test_assets import SMALL

pytestmark = pytest.mark.heavy(40)  # seconds on 2 quiet cores: make test starts the heaviest files first

KEY = b"k" * 32


# ----------------------------------------------------------------- the keyed hash
def test_pseudonyms_are_keyed_stable_and_keep_missing():
    ids = pd.Series(["17850", None, "17850", "../../etc/passwd", "🛒\x07"], dtype="string")
    a = pseudonymize_ids(ids, KEY)
    assert a.isna().tolist() == [False, True, False, False, False]
    assert a.iloc[0] == a.iloc[2] and a.nunique() == 3
    assert a.dropna().str.fullmatch(r"u_[0-9a-f]{16}").all()
    assert a.tolist() == pseudonymize_ids(ids, KEY).tolist(), "same key, same pseudonyms"
    other = pseudonymize_ids(ids, b"another secret key!!")
    assert not (other.dropna() == a.dropna()).any(), "another key, other pseudonyms"
    # the shop, holding the key, finds a customer's pseudonym; HMAC-SHA256 known answer (RFC 4231 case 2 key)
    assert pseudonymize_id("what do ya want for nothing?", b"Jefe") == "u_5bdcc146bf60754e"


def test_local_key_is_created_once_private_and_refused_when_readable(tmp_path):
    path = tmp_path / "secrets" / "pseudonym.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 64
    assert load_or_create_key(path) == key, "created once, then reused"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    path.chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_or_create_key(path)


def test_missing_or_short_secret_is_a_clear_error(monkeypatch):
    with pytest.raises(PseudonymKeyError, match="COBUY_PSEUDONYM_KEY"):
        Pseudonymizer(secret=None).key()
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        Pseudonymizer(secret="short").key()
    monkeypatch.setenv("COBUY_PSEUDONYM_KEY", "s" * 40)
    res = build_resources("/tmp/unused", "production")["pseudonymizer"]
    assert isinstance(res, Pseudonymizer)
    # EnvVar is resolved by Dagster at run time: the secret itself is not in the definitions
    assert "s" * 40 not in repr(res)


def test_quarantine_records_carry_pseudonyms_only(shop):
    raw = pseudonymize_tables(shop.tables, KEY)
    r = clean(raw)
    raw_ids = set(shop.tables.interactions["user_id"].dropna())
    records = [json.loads(x) for x in r.quarantine["record"]]
    users = {rec["user_id"] for rec in records if "user_id" in rec}
    assert users and not users & raw_ids and all(u.startswith("u_") for u in users)
    assert not set(r.interactions["user_id"].dropna()) & raw_ids


# ----------------------------------------------------------------- scanning outputs for raw ids
def _patterns(ids: set[str]) -> dict[str, tuple[re.Pattern, re.Pattern]]:
    """Per encoding, (the ids not followed by a word character, the word character before one): an id inside a
    longer word does not count (``U00001`` must not match inside ``SKU00001``). UTF-16/32 catch numpy's
    fixed-width unicode arrays in pickles. The word before is checked per candidate (:func:`_hits`), not by a
    lookbehind: one in front of the alternation keeps the regex engine from skipping ahead to the ids' first
    characters, 50x slower over the hundreds of MB of model weights a run writes."""
    out = {}
    for enc, pad in (("utf-8", b""), ("utf-16-le", b"\x00"), ("utf-32-le", b"\x00\x00\x00")):
        alnum = b"[A-Za-z0-9]" + re.escape(pad)
        body = b"|".join(re.escape(i.encode(enc)) for i in sorted(ids, key=len, reverse=True))
        out[enc] = (re.compile(b"(?:" + body + b")(?!" + alnum + b")"), re.compile(alnum))
    return out


def _hits(blob: bytes, ids: re.Pattern, before: re.Pattern, width: int) -> set[bytes]:
    """Every id in ``blob`` whose preceding ``width``-byte character is not a word character (overlaps too)."""
    hits, pos = set(), 0
    while (m := ids.search(blob, pos)) is not None:
        start = m.start()
        if start < width or not before.fullmatch(blob, start - width, start):
            hits.add(m.group())
        pos = start + 1
    return hits


def _blobs(path: Path) -> list[bytes]:
    """The file's bytes, plus decoded content where the bytes are compressed (Parquet pages, zip
    members such as Lightning checkpoints, gzip)."""
    data = path.read_bytes()
    blobs = [data]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        blobs.append("\n".join(str(v) for c in table.columns for v in c.to_pylist()).encode())
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            blobs += [zf.read(n) for n in zf.namelist()]
    elif data[:2] == b"\x1f\x8b":
        blobs.append(gzip.decompress(data))
    return blobs


def find_raw_ids(roots: list[Path], ids: set[str], texts: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Where any raw id occurs: ``{file or text name: [ids found]}`` (empty when none)."""
    pats = _patterns(ids)
    found: dict[str, list[str]] = {}
    items = [(str(p), b) for root in roots for p in sorted(root.rglob("*")) if p.is_file() for b in _blobs(p)]
    items += [(name, t.encode()) for name, t in (texts or {}).items()]
    widths = {"utf-8": 1, "utf-16-le": 2, "utf-32-le": 4}
    for name, blob in items:
        for enc, (pat, before) in pats.items():
            hits = {h.decode(enc) for h in _hits(blob, pat, before, widths[enc])}
            if hits:
                found.setdefault(name, []).extend(sorted(hits))
    return found


def test_scanner_finds_ids_in_every_encoding_it_claims(tmp_path, shop):
    """Positive control: raw ids written the ways outputs store them are all found."""
    ids = set(shop.tables.interactions["user_id"].dropna())
    one = sorted(ids)[3]
    pd.DataFrame({"x": [one]}).to_parquet(tmp_path / "a.parquet")  # snappy-compressed pages
    pd.to_pickle(np.array([one]), tmp_path / "b.pkl")  # numpy '<U6': UTF-32
    with zipfile.ZipFile(tmp_path / "c.ckpt", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.pkl", f"user {one}!")
    (tmp_path / "d.json").write_text(json.dumps({"sku": "SKU00001", "b": "B000001"}))  # no false positive
    found = find_raw_ids([tmp_path], ids)
    assert set(found) == {str(tmp_path / n) for n in ("a.parquet", "b.pkl", "c.ckpt")}
    assert all(set(v) == {one} for v in found.values())


def _fast(config: dict) -> dict:
    """test_assets' run config, smaller where it only costs time (this test checks ids, not quality)."""
    cfg = copy.deepcopy(config)
    ops = cfg["ops"]
    ops["raw_tables"]["config"]["synthetic_users"] = 80
    for op in ops.values():
        c = op.get("config", {})
        for key, small in (("tune_trials", 1), ("max_epochs", 2), ("steps", 2), ("patience", 1)):
            if key in c:
                c[key] = small
    return cfg


def test_no_raw_customer_id_in_any_output_or_log(tmp_path, caplog, capfd, monkeypatch):
    """The whole asset graph on the synthetic shop; then every file under the data folder (Parquet,
    pickles, JSON, Data Docs HTML, MLflow database and artifacts, Optuna database, checkpoints), the
    Dagster instance (event log with metadata previews, compute logs) and every log line captured."""
    monkeypatch.delenv("COBUY_PSEUDONYM_KEY", raising=False)  # the local default: a key file
    cfg = _fast(SMALL)
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    caplog.set_level(logging.DEBUG)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.materialize([*all_assets, *all_checks], resources=build_resources(str(data)), run_config=cfg,
                                instance=instance)
        assert result.success
        events = "\n".join(f"{e.message}\n{e.event_specific_data!r}" for e in result.all_events)
    out, err = capfd.readouterr()
    shop = generate_shop(SyntheticShopConfig(seed=7, n_users=80))
    raw_ids = set(shop.tables.interactions["user_id"].dropna())
    assert len(raw_ids) >= 70
    key_file = data / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    users = set(result.output_for_node("raw_tables", "raw_interactions")["user_id"].dropna())
    assert users == {pseudonymize_id(u, load_or_create_key(key_file)) for u in raw_ids}
    scanned = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in scanned) and any(p.suffix == ".html" for p in scanned)
    assert any(p.suffix == ".pkl" for p in scanned)  # MLflow's database and artifacts too, when assets log there
    found = find_raw_ids([data, home], raw_ids, {"captured log records": caplog.text, "stdout": out,
                                                 "stderr": err, "dagster events": events})
    assert found == {}, f"raw customer ids leaked: {dict(list(found.items())[:5])}"
    # the positive control: the same scan does see the pseudonyms it should
    pseudonyms = find_raw_ids([data / "assets"], users)
    assert any("validated_interactions" in name for name in pseudonyms)


def test_same_secret_same_pseudonyms_across_runs_other_secret_differs(tmp_path, monkeypatch):
    cfg = {"ops": {"raw_tables": {"config": {"kind": "synthetic", "synthetic_users": 30}}}}
    runs = []
    ingestion = [a for a in all_assets if "raw_interactions" in {k.to_user_string() for k in a.keys}]
    with dg.instance_for_test() as instance:
        for i, secret in enumerate(["first secret, long enough", "first secret, long enough", "a different secret!!"]):
            monkeypatch.setenv("COBUY_PSEUDONYM_KEY", secret)
            result = dg.materialize(ingestion, resources=build_resources(str(tmp_path / f"d{i}")), run_config=cfg,
                                    instance=instance)
            runs.append(result.output_for_node("raw_tables", "raw_interactions")["user_id"])
            assert not (tmp_path / f"d{i}" / "secrets").exists(), "the environment's key is used, no file made"
    assert runs[0].equals(runs[1])
    assert not (runs[0].dropna().values == runs[2].dropna().values).any()


def exact_id_cells(root: Path, ids: set[str]) -> dict[str, list[str]]:
    """Raw ids held as whole values: any string cell of any Parquet file under ``root`` equal to an id,
    and the user field of every JSON record cell (the quarantine's audit copy)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        for name, column in zip(table.column_names, table.columns):
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            values = set(column.drop_null().to_pylist())
            if name == "record":
                values = {str(json.loads(v).get("user_id")) for v in values}
            hits = sorted(values & ids)
            if hits:
                found[f"{path}:{name}"] = hits[:5]
    return found


@pytest.mark.benchmark
def test_online_retail_customer_ids_never_reach_the_outputs(tmp_path, monkeypatch):
    """Online Retail's real CustomerIDs through ingestion, validation and the splits. They are
    5-digit numbers, which a byte scan also finds in row numbers and quantities, so this variant checks
    whole values: every string cell of every Parquet output and the user field of every quarantine
    record (the synthetic test above does the byte scan)."""
    from data_checks.readers import OnlineRetailSource, read_online_retail
    from orchestration.assets import ingestion, splits, validation

    path = need(ONLINE_RETAIL)
    monkeypatch.setenv("COBUY_PSEUDONYM_KEY", "benchmark secret, long enough")
    raw = read_online_retail(OnlineRetailSource(str(path))).interactions
    # a customer number that is also a stock code or an invoice number is a legitimate value there
    ids = set(raw["user_id"].dropna()) - set(raw["item_id"].dropna()) - set(raw["basket_id"].dropna())
    assert len(ids) > 4300
    cfg = {"ops": {"raw_tables": {"config": {"kind": "online_retail", "path": str(path)}}}}
    selected = [a for m in (ingestion, validation, splits) for a in dg.load_assets_from_modules([m])]
    checks = [c for m in (validation,) for c in dg.load_asset_checks_from_modules([m])]
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize([*selected, *checks], resources=build_resources(str(tmp_path / "data")),
                                run_config=cfg, instance=instance, raise_on_error=False)
    assert result.success
    outputs = list((tmp_path / "data").rglob("*.parquet"))
    assert len(outputs) >= 5
    found = exact_id_cells(tmp_path / "data", ids)
    assert found == {}, f"raw customer ids leaked: {found}"
    # the positive control: the same check sees the ids in an unpseudonymised copy
    (tmp_path / "control").mkdir()
    raw[["user_id", "item_id"]].to_parquet(tmp_path / "control" / "raw.parquet")
    assert exact_id_cells(tmp_path / "control", ids)
    print(f"Online Retail: {len(ids):,} customer ids, none in {len(outputs)} Parquet outputs")
