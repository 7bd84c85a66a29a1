"""Build the bundled demo subset from the GTSRB test set: every Stop image plus 20 of each other class.

python tools/make_demo_subset.py $PATCHSCOPE_DATA/gtsrb32.npz patchscope/data/demo/gtsrb_demo.npz
"""

import sys

import numpy as np

STOP, PER_CLASS, SEED = 14, 20, 0


def main(src: str, dst: str) -> None:
    z = np.load(src, allow_pickle=False)
    x, y = z["x_test"], z["y_test"]
    rng = np.random.default_rng(SEED)
    keep = [np.flatnonzero(y == STOP)]
    for c in range(43):
        if c != STOP:
            keep.append(np.sort(rng.choice(np.flatnonzero(y == c), PER_CLASS, replace=False)))
    idx = np.sort(np.concatenate(keep))
    np.savez_compressed(dst, x=x[idx], y=y[idx], test_index=idx.astype(np.int32))
    print(dst, len(idx), "images")


if __name__ == "__main__":
    main(*sys.argv[1:3])
