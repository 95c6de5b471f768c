import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# under pytest-xdist (`make test`) the workers share the cores: one BLAS / torch thread pool each of its share, set
# before numpy or torch load, instead of every worker starting as many threads as there are cores
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
ONLINE_RETAIL = DATASETS / "online_retail" / "online_retail.csv.gz"
GOWALLA = DATASETS / "gowalla"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"dataset not available: {path} (../shared/datasets is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def shop():
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    return generate_shop(SyntheticShopConfig(n_users=300))


@pytest.fixture(scope="session")
def shop_clean(shop):
    from data_checks.cleaning import clean

    return clean(shop.tables)


@pytest.fixture(scope="session")
def shop_split(shop_clean):
    from training.splits import SplitConfig, make_split

    return make_split(shop_clean.interactions, SplitConfig(strategy="temporal"))


@pytest.fixture(scope="session")
def shop_data(shop_clean, shop_split):
    from training.data import build_interaction_data

    return build_interaction_data(shop_split.train, shop_clean.items["item_id"])


@pytest.fixture(scope="session")
def online_retail_raw():
    from data_checks.readers import OnlineRetailSource, read_online_retail

    return read_online_retail(OnlineRetailSource(str(need(ONLINE_RETAIL))))


def pytest_collection_modifyitems(session, config, items):
    """Test files marked ``heavy(seconds)`` first, the heaviest first, the others after in their order: under
    `make test` (pytest-xdist, whole files per worker, ``--no-loadscope-reorder``) the long files start at once
    and the short ones fill the end, so the two workers finish together instead of one running a long file
    alone at the end."""
    def weight(item) -> float:
        marker = item.get_closest_marker("heavy")
        return float(marker.args[0]) if marker is not None and marker.args else 0.0

    order = {item: n for n, item in enumerate(items)}
    items.sort(key=lambda item: (-weight(item), str(item.path), order[item]))
