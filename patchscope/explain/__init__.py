"""Explain: where the model looks, how the probabilities move, how the patch's signal grows layer by layer.

>>> from patchscope.explain import explain_attention, trace_layers, patch_footprint, explain_patch, save_explanation
"""

from patchscope.explain.attention import (
    Attention,
    TopK,
    attention_rollout,
    default_layer,
    explain_attention,
    grad_cam,
    heatmaps,
    top_probabilities,
)
from patchscope.explain.figures import anomaly_figure, attention_figure, propagation_figure
from patchscope.explain.propagation import (
    LayerTrace,
    apply_patch,
    capture,
    grid_footprint,
    layer_grid,
    max_z,
    patch_footprint,
    token_footprint,
    trace_layers,
)
from patchscope.explain.report import ExplainedImage, Explanation, explain_patch, save_explanation

__all__ = [
    "Attention",
    "ExplainedImage",
    "Explanation",
    "LayerTrace",
    "TopK",
    "anomaly_figure",
    "apply_patch",
    "attention_figure",
    "attention_rollout",
    "capture",
    "default_layer",
    "explain_attention",
    "explain_patch",
    "grad_cam",
    "grid_footprint",
    "heatmaps",
    "layer_grid",
    "max_z",
    "patch_footprint",
    "propagation_figure",
    "save_explanation",
    "token_footprint",
    "top_probabilities",
    "trace_layers",
]
