"""ONNX graph of association rules with multi-item antecedents (``training.models.association.RuleForm``).

Input ``history`` float32 (B, n_items) as the item-item graph's (1 where the user has the item). A rule fires
when the history holds every item of its antecedent:

    held   = Cast(history > 0)                                   (B, n_items)
    fired  = ReduceMin(Gather(held, antecedents, axis=1), axis=2) (B, m): antecedent rows padded with their own
                                                                  first item, so the minimum is over the whole set
    contrib = Gather(fired, rule_antecedent, axis=1) * rule_confidence          (B, R), float64
    scores = ScatterElements(zeros, rule_consequent, contrib, axis=1, reduction="add")   (B, n_items), float64,
             then rounded to float32 once (as the native model sums), so the parity check's 1e-4 holds for
             scores in the hundreds

then the history's own items set to -inf and TopK, with the outputs of every export (``top_items``,
``top_scores``, ``scores``). Pair rules are one-item antecedents, so the file holds m * L + 3 R numbers and no
n_items x n_items matrix; only the batch's (B, m, L) and (B, R) blocks are dense while it runs.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from training.models.association import RuleForm


def rules_nodes(form: RuleForm) -> tuple[list, list]:
    """The nodes and initializers computing ``scores`` from ``seen`` (history > 0), for
    ``serving.onnx_export.history_graph`` (which adds the masking and TopK)."""
    node = helper.make_node
    nodes = [
        node("Cast", ["seen"], ["held"], to=TensorProto.FLOAT),
        node("Gather", ["held", "antecedents"], ["held_at"], axis=1),  # (B, m, L)
        node("ReduceMin", ["held_at", "last_axis"], ["fired"], keepdims=0),  # (B, m)
        node("Gather", ["fired", "rule_antecedent"], ["rule_fired"], axis=1),  # (B, R)
        node("Cast", ["rule_fired"], ["rule_fired_64"], to=TensorProto.DOUBLE),
        node("Mul", ["rule_fired_64", "rule_confidence"], ["contrib"]),
        node("Shape", ["contrib"], ["contrib_shape"]),
        node("Expand", ["rule_consequent_row", "contrib_shape"], ["consequent_idx"]),  # (B, R)
        node("Mul", ["history", "zero_f"], ["zeros_32"]),  # (B, n_items) of zeros
        node("Cast", ["zeros_32"], ["zeros"], to=TensorProto.DOUBLE),
        # summed in float64 and rounded once, as the native model does: the order of the additions then moves
        # the float32 score by at most one rounding step
        node("ScatterElements", ["zeros", "consequent_idx", "contrib"], ["scores_64"], axis=1, reduction="add"),
        node("Cast", ["scores_64"], ["scores"], to=TensorProto.FLOAT),
    ]
    inits = [numpy_helper.from_array(np.ascontiguousarray(form.antecedents, np.int64), "antecedents"),
             numpy_helper.from_array(np.asarray(form.rule_antecedent, np.int64), "rule_antecedent"),
             numpy_helper.from_array(np.asarray(form.rule_confidence, np.float32).astype(np.float64),
                                     "rule_confidence"),
             numpy_helper.from_array(np.asarray(form.rule_consequent, np.int64)[None, :], "rule_consequent_row"),
             numpy_helper.from_array(np.array([2], np.int64), "last_axis")]
    return nodes, inits
