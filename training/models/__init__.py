"""Model families behind one contract (:class:`training.models.base.Recommender`)."""
from training.models.association import AssociationRules
from training.models.base import Recommender
from training.models.blend import LinearBlend
from training.models.chebycf import ChebyCF
from training.models.ease import EASE
from training.models.graph_filter import GraphFilter
from training.models.itemknn import ItemKNN
from training.models.lightgcn import LightGCN
from training.models.mf import IALSMatrixFactorization, MatrixFactorization
from training.models.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "association_rules": AssociationRules,
    "itemknn": ItemKNN,
    "ease": EASE,
    "gf_cf": GraphFilter,
    "chebycf": ChebyCF,
    "mf_bpr": MatrixFactorization,
    "mf_ials": IALSMatrixFactorization,
    "lightgcn": LightGCN,
    "blend": LinearBlend,
}

__all__ = ["MODELS", "ChebyCF", "EASE", "AssociationRules", "GraphFilter", "IALSMatrixFactorization", "ItemKNN", "LightGCN", "LinearBlend", "MatrixFactorization", "Popularity",
           "Recommender"]
