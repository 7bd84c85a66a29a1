"""Defenses: empirical ones that wrap a classifier, certified ones split into a prediction map and pure certificates.

Both kinds are registered by name (:mod:`patchscope.defenses.registry`):

>>> from patchscope.defenses import create_defense, list_defenses, create_certifier, list_certifiers
>>> from patchscope.defenses import mask_set, pc_prediction_map, pc_certify, pc_infer
>>> from patchscope.defenses import ablation_set, ds_prediction_map, ds_certify, ds_predict, ds_delta
"""

from patchscope.defenses.clipping import ActivationClipping, clip_defense, fit_bounds
from patchscope.defenses.counts import CertCounts, CertOutcomes
from patchscope.defenses.patchcleanser import (
    FILL,
    UNKNOWN,
    PatchCleanser,
    first_round_majority,
    mask_positions,
    mask_set,
    masked_predictions,
    pair_masks,
    pc_certify,
    pc_counts,
    pc_decision_map,
    pc_infer,
    pc_needed,
    pc_outcomes,
    pc_prediction_map,
    predict_masked,
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
from patchscope.defenses.registry import (
    CERTIFIERS,
    DEFENSES,
    Certifier,
    certifier_spec,
    create_certifier,
    create_defense,
    defense_spec,
    list_certifiers,
    list_defenses,
    register_certifier,
    register_defense,
)
from patchscope.defenses.smoothing import (
    MODES,
    DerandomizedSmoothing,
    ablation_set,
    ds_certify,
    ds_delta,
    ds_predict,
    ds_prediction_map,
)

__all__ = [
    "CERTIFIERS",
    "DEFENSES",
    "ActivationClipping",
    "BitDepthDefense",
    "BlurDefense",
    "CertCounts",
    "CertOutcomes",
    "Certifier",
    "DerandomizedSmoothing",
    "FILL",
    "InputDefense",
    "JpegDefense",
    "LocalGradientSmoothing",
    "MODES",
    "MedianDefense",
    "PatchCleanser",
    "UNKNOWN",
    "ablation_set",
    "certifier_spec",
    "clip_defense",
    "create_certifier",
    "create_defense",
    "defense_spec",
    "ds_certify",
    "ds_delta",
    "ds_predict",
    "ds_prediction_map",
    "first_round_majority",
    "fit_bounds",
    "gradient_magnitude",
    "list_certifiers",
    "list_defenses",
    "mask_positions",
    "mask_set",
    "masked_predictions",
    "pair_masks",
    "pc_certify",
    "pc_counts",
    "pc_decision_map",
    "pc_infer",
    "pc_needed",
    "pc_outcomes",
    "pc_prediction_map",
    "predict_masked",
    "register_certifier",
    "register_defense",
    "straight_through",
]
