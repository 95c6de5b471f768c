"""Model families behind one contract (:class:`training.models.base.Recommender`)."""
from training.models.association import AssociationRules
from training.models.base import Recommender
from training.models.itemknn import ItemKNN
from training.models.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "association_rules": AssociationRules,
    "itemknn": ItemKNN,
}

__all__ = ["MODELS", "AssociationRules", "ItemKNN", "Popularity", "Recommender"]
