"""gtsrb-vit carried to 64-px images with 8-px tokens (the same 8x8 grid of 64 tokens), before any training.

Every weight is copied except the token embedding: each weight of the 4x4 kernel is spread over the 2x2 block of
the 8x8 kernel that it covers, divided by 4, so that an image upsampled 2x by pixel repetition gives exactly the
32-px model's tokens (bilinear upsampling gives them closely). The result is the start of `train --init`.

    python docs/runs/resolution-2026-12-05/vit_tokens_64.py OUT.safetensors
"""

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from patchscope.models import create_model
from patchscope.models.archs import ViT
from patchscope.models.checkpoint import save_checkpoint


def main(out: Path) -> None:
    small = create_model("gtsrb-vit")
    kwargs = {**small.card["arch_kwargs"], "image_size": 64, "patch": 8}
    net = ViT(num_classes=len(small.classes), **kwargs)
    state = dict(small.net.state_dict())
    state["embed.weight"] = F.interpolate(state["embed.weight"], scale_factor=2, mode="nearest") / 4
    net.load_state_dict(state, strict=True)
    dropped = ("history", "accuracy", "accuracy_data_hash")
    card = {k: v for k, v in copy.deepcopy(small.card).items() if k not in dropped}
    card.update(name=out.stem, arch_kwargs=kwargs, input_size=64, recipe={**card["recipe"], "arch_kwargs": kwargs})
    card["note"] = __doc__.split("\n\n")[0].replace("\n", " ")
    save_checkpoint(net, card, out, half=False)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        a, b = small(x), create_model(str(out))(x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    print(f"{out}: largest logit difference on pixel-repeated images {(a - b).abs().max():.2e}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
