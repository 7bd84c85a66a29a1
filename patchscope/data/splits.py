"""Train/validation splits by track: frames of one physical sign never straddle the split."""

from __future__ import annotations

import torch

from patchscope.data.imageset import ImageSet


def split_by_track(data: ImageSet, val_fraction: float = 0.1, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split ``data`` into (train, val) with whole tracks on one side; no tracks: each image is one.

    >>> from patchscope.data import load_data
    >>> tr, va = split_by_track(load_data("demo"), 0.2)
    >>> len(tr) + len(va) == len(load_data("demo"))
    True
    """
    tracks = data.tracks if data.tracks is not None else torch.arange(len(data))
    unique = torch.unique(tracks)
    g = torch.Generator().manual_seed(seed)
    n_val = int(round(val_fraction * len(unique)))
    val_tracks = unique[torch.randperm(len(unique), generator=g)[:n_val]]
    is_val = torch.isin(tracks, val_tracks)
    return data.subset(~is_val), data.subset(is_val)
