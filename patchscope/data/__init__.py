"""Data: labelled image sets as uint8 tensors, class names, track-wise splits.

>>> from patchscope.data import load_data, resolve_class
>>> demo = load_data("demo")
>>> resolve_class("yield", demo.classes)
13
"""

from patchscope.data.classes import gtsrb_classes, resolve_class
from patchscope.data.imageset import ImageSet
from patchscope.data.sources import default_data_root, load_data, resize
from patchscope.data.splits import split_by_track

__all__ = ["ImageSet", "default_data_root", "gtsrb_classes", "load_data", "resize", "resolve_class", "split_by_track"]
