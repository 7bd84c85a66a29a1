"""Defenses: empirical ones that wrap a classifier, certified ones split into a prediction map and pure certificates.

>>> from patchscope.defenses import create_defense, mask_set, pc_prediction_map, pc_certify, pc_infer
>>> from patchscope.defenses import ablation_set, ds_prediction_map, ds_certify, ds_predict, ds_delta
"""

from patchscope.defenses.clipping import ActivationClipping, fit_bounds
from patchscope.defenses.factory import CERTIFIED, EMPIRICAL, create_defense
from patchscope.defenses.patchcleanser import (
    FILL, UNKNOWN, first_round_majority, mask_positions, mask_set, masked_predictions, pair_masks, pc_certify, pc_counts, pc_decision_map, pc_infer,
    pc_needed, pc_prediction_map, predict_masked,
)
from patchscope.defenses.preprocess import (
    BitDepthDefense,
    BlurDefense,
    InputDefense,
    JpegDefense,
    LocalGradientSmoothing,
    MedianDefense,
    gradient_magnitude,
    straight_through,
)
from patchscope.defenses.smoothing import MODES, ablation_set, ds_certify, ds_delta, ds_predict, ds_prediction_map

__all__ = [
    "ActivationClipping", "BitDepthDefense", "BlurDefense", "CERTIFIED", "EMPIRICAL", "FILL", "InputDefense",
    "JpegDefense", "LocalGradientSmoothing", "MODES", "MedianDefense", "UNKNOWN", "ablation_set", "create_defense",
    "ds_certify", "ds_delta", "ds_predict", "ds_prediction_map", "first_round_majority", "fit_bounds",
    "gradient_magnitude", "mask_positions", "mask_set", "masked_predictions", "pair_masks", "pc_certify",
    "pc_counts", "pc_decision_map", "pc_infer", "pc_needed", "pc_prediction_map", "predict_masked",
    "straight_through",
]
