"""`SparseRSAttack`: one patch per image found by random search on the model's scores alone, never a gradient.

The patch threat model of Sparse-RS (Croce, Andriushchenko, Singh, Flammarion, Hein, "Sparse-RS: a versatile
framework for query-efficient sparse black-box adversarial attacks", AAAI 2022): every image gets a square patch of
the configured size at a place of its own. The search starts from vertical stripes of colours at the corners of the
RGB cube, at a random place, and then alternates between two proposals: most iterations repaint a random square
window of the patch with one random corner colour (the window shrinks as the queries are spent, on the paper's
schedule), and every few iterations the patch moves by a random shift (shrinking as well). A proposal is kept when
the image's loss does not get worse (ties are kept, so a plateau of a rounded or quantised output is walked) or the
image is won. Each image stops at its first win (targeted: the target is top-1; untargeted: its label is not), so
it spends no more queries. Only the model's outputs are read, under ``torch.no_grad``.

All images step together: one forward pass (in chunks of ``batch_size`` rows) per iteration over the images not yet
won. The budget is ``queries`` per image, the first query included; by default the config's ``steps``. The
patches are searched on the images as given (the digital threat model): the config's viewing ranges are not used.
"""

from __future__ import annotations

import torch
from torch import nn

from patchscope.attacks.base import Attack, Device
from patchscope.attacks.config import AttackConfig
from patchscope.attacks.eot import on_object_plan, paste_planned
from patchscope.attacks.patch import PerImagePatches, patch_side, shape_mask
from patchscope.attacks.registry import register_attack
from patchscope.attacks.scoring import Objective, score
from patchscope.errors import PatchscopeError
from patchscope.validate import check_positive

#: the share of the patch that the first proposals repaint (the paper's default)
ALPHA = 0.8
#: the window schedule, on a 10 000-query scale: up to each mark the window's area is ``alpha`` / the divisor
SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 32), (6000, 64), (8000, 64))


def window_fraction(it: int, budget: int, alpha: float = ALPHA) -> float:
    """The share of the patch's area that proposal ``it`` of ``budget`` repaints: ``alpha``, halved step by step.

    >>> [window_fraction(it, 1000) for it in (1, 3, 10, 100, 999)]
    [0.8, 0.4, 0.2, 0.05, 0.00625]
    """
    scaled = int(it / budget * 10000)
    return alpha / next((div for mark, div in SCHEDULE if scaled <= mark), 128)


@register_attack("sparse-rs")
class SparseRSAttack(Attack):
    """Gradient-free per-image patches by random search; called as ``attack(images, labels) -> PerImagePatches``.

    Args:
        model: the classifier; only its outputs are read.
        config: the shared settings: ``size`` and ``shape`` of the patch, ``placement`` (on-object only),
            ``location`` (fixes every image's place: then only the content is searched), ``target``, ``loss``
            (``ce``: cross-entropy; ``margin`` and ``sigmoid``: the logit margin, of which the sigmoid is a monotone
            function), ``batch_size`` (rows per forward pass), ``precision`` and ``seed``. ``steps`` is the query
            budget unless ``queries`` is given.
        queries: the budget of model queries per image, the first one included (0: the config's ``steps``).
        device: where to run.
        progress: show a progress bar.

    After a call, :attr:`queries_used` (N,) holds each image's queries; the result's ``meta["queries"]`` as well.

    >>> from patchscope.models import create_model
    >>> model = create_model("gtsrb-cnn")
    >>> attack = SparseRSAttack(model, AttackConfig(size=0.1, target=1), queries=20, progress=False)
    >>> out = attack(torch.rand(5, 3, 32, 32), torch.zeros(5, dtype=torch.long))
    >>> out.pixels.shape, out.location.shape, bool((attack.queries_used <= 20).all())
    (torch.Size([5, 3, 10, 10]), torch.Size([5, 2]), True)
    """

    title = "sparse-rs attack"
    makes = "sparse-rs patches"
    refuses = ("tv_weight", "nps_weight", "printer", "compile")

    def __init__(
        self, model: nn.Module, config: AttackConfig, queries: int = 0, device: Device = "cpu", progress: bool = True
    ) -> None:
        super().__init__(model, config, device, progress)
        if config.placement != "on-object":
            raise PatchscopeError(
                f"sparse-rs patches have a place on each image: placement must be on-object, got {config.placement}",
                params=("placement",),
            )
        self.budget = check_positive("queries", queries or config.steps, 10**7)
        self.queries_used = torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def run(self, images: torch.Tensor, labels: torch.Tensor) -> PerImagePatches:
        """Search one patch per image of ``images`` (N, 3, H, H) in [0,1] with true ``labels`` (N,).

        Returns:
            :class:`~patchscope.attacks.per_image.PerImagePatches`, patch n for image n.
        """
        cfg, dev, n, size = self.cfg, self.device, len(images), images.shape[-1]
        side = patch_side(cfg.size, size, cfg.shape)
        cfg.check_fits(size, side)
        mask, g = shape_mask(cfg.shape, side).to(dev), self.generator()
        if cfg.location is not None:
            loc = torch.tensor([cfg.location], device=dev).expand(n, 2).clone()
        else:
            loc = torch.randint(0, size - side + 1, (n, 2), generator=g, device=dev)
        stripes = torch.randint(0, 2, (n, 3, 1, side), generator=g, device=dev)
        patches = stripes.float().expand(n, 3, side, side).clone()
        loss, won = self._query(images, labels, patches, loc, mask)
        used = torch.ones(n, dtype=torch.long, device=dev)
        with self.bar(self.budget - 1) as update:  # the proposals, after the first query
            for it in range(1, self.budget):
                todo = (~won).nonzero().squeeze(1)  # the images still to win: only they are queried
                if len(todo) == 0:
                    break
                new, moved = self._propose(patches[todo], loc[todo], it, size - side, g)
                trial, hit = self._query(images[todo], labels[todo], new, moved, mask)
                keep = (trial <= loss[todo]) | hit
                patches[todo] = torch.where(keep[:, None, None, None], new, patches[todo])
                loc[todo] = torch.where(keep[:, None], moved, loc[todo])
                loss[todo], won[todo], used[todo] = torch.where(keep, trial, loss[todo]), hit, used[todo] + 1
                self.record(it - 1, self.budget - 1, loss.mean(), won.sum(), n, update)
        self.queries_used = used
        meta = {"config": cfg.as_dict(), "attack": "sparse-rs", "queries": used.tolist(), "budget": self.budget}
        return PerImagePatches(patches, mask.cpu(), "on-object", loc.float(), size, meta=meta)

    def _propose(
        self, patches: torch.Tensor, loc: torch.Tensor, it: int, free: int, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposal ``it`` for each row: a random shift of the place (every few iterations, while the shift is at
        least a pixel and the place is free), else one square window of the patch repainted in a random corner
        colour of the RGB cube. Returns the (m, 3, s, s) patches and (m, 2) places."""
        m, side, dev = len(patches), patches.shape[-1], self.device
        shift = int(max((self.budget - it) / self.budget, 0.0) * 0.75 * (free + side))
        if self.cfg.location is None and shift > 0 and it % (5 * (1 + it // 1000)) == 0:
            step = torch.randint(-shift, shift + 1, (m, 2), generator=g, device=dev)
            return patches, (loc + step).clamp(0, free)
        w = max(int(window_fraction(it, self.budget) ** 0.5 * side), 1)
        corner = torch.randint(0, side - w + 1, (m, 2, 1), generator=g, device=dev)
        colour = torch.randint(0, 2, (m, 3, 1, 1), generator=g, device=dev).float()
        ticks = torch.arange(side, device=dev)
        rows, cols = ((ticks >= corner) & (ticks < corner + w)).unbind(1)  # (m, s) each
        window = (rows[:, :, None] & cols[:, None, :])[:, None]  # (m, 1, s, s)
        return torch.where(window, colour, patches), loc

    def _query(
        self, images: torch.Tensor, labels: torch.Tensor, patches: torch.Tensor, loc: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One query a row, ``patches[i]`` at ``loc[i]`` on ``images[i]``: (loss to minimise, won), (m,) each."""
        cfg, h, w = self.cfg, images.shape[-2], images.shape[-1]
        objective = Objective(cfg.target, "ce" if cfg.loss == "ce" else "margin", float("inf"), cfg.precision)
        losses, wins = [], []
        for start in range(0, len(images), cfg.batch_size):  # chunks of rows, for memory
            r = slice(start, start + cfg.batch_size)
            x = paste_planned(images[r], patches[r], on_object_plan(mask, loc[r], h, w))
            loss, won = score(self.model, x, labels[r], objective)
            losses.append(loss)
            wins.append(won)
        return torch.cat(losses), torch.cat(wins)
