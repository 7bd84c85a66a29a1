"""Data: labelled image sets (in memory or streamed from disk), class names, preprocessing, track-wise splits.

>>> from patchscope.data import load_data, resolve_class
>>> demo = load_data("demo")
>>> resolve_class("yield", demo.classes)
13
"""

from patchscope.data.classes import find_class, gtsrb_classes, imagenet_wnids, resolve_class
from patchscope.data.imageset import ImageSet
from patchscope.data.labels import load_class_map, match_folders
from patchscope.data.preprocess import Preprocess
from patchscope.data.sources import data_for, default_data_root, load_data, resize
from patchscope.data.splits import split_by_track
from patchscope.data.stream import Batches, ImageStream, open_folder

__all__ = [
    "Batches",
    "ImageSet",
    "ImageStream",
    "Preprocess",
    "data_for",
    "default_data_root",
    "find_class",
    "gtsrb_classes",
    "imagenet_wnids",
    "load_class_map",
    "load_data",
    "match_folders",
    "open_folder",
    "resize",
    "resolve_class",
    "split_by_track",
]
