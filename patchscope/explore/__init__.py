"""Explore: place a patch on an image by hand and see what the network, its heatmaps and a certified defense make of
it, one view at a time; optimise the patch where it sits. The compute behind ``patchscope explore``'s page (pure
functions with typed results); the page's server is :mod:`patchscope.explore.app` (the ``explore`` extra).

>>> from patchscope.explore import Camera, Placement, render_scene, look, certify_scene, optimise_here
"""

from patchscope.explore.look import Guess, LayerShare, Look, look
from patchscope.explore.optimise import (
    Optimised,
    OptimiseSettings,
    Progress,
    SavedRun,
    optimise_here,
    save_run,
    upright_patch,
)
from patchscope.explore.scene import (
    CAMERA_LIMITS,
    Camera,
    Placement,
    Scene,
    blank_patch,
    patch_from_rgba,
    render_scene,
    view_params,
)
from patchscope.explore.verdict import Box, Verdict, certify_scene

__all__ = [
    "CAMERA_LIMITS",
    "Box",
    "Camera",
    "Guess",
    "LayerShare",
    "Look",
    "OptimiseSettings",
    "Optimised",
    "Placement",
    "Progress",
    "SavedRun",
    "Scene",
    "Verdict",
    "blank_patch",
    "certify_scene",
    "look",
    "optimise_here",
    "patch_from_rgba",
    "render_scene",
    "save_run",
    "upright_patch",
    "view_params",
]
