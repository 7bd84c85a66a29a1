"""Input-preprocessing defenses: each wraps a classifier and cleans its [0,1] input first.

Every defense is an ``nn.Module`` with the wrapped model's ``classes``, ``input_size`` and a
``name``, so it drops in wherever a :class:`~patchscope.models.Classifier` goes (evaluation, attacks).
``bpda=True`` keeps the forward pass exact but passes the gradient straight through the cleaning
step (Backward Pass Differentiable Approximation, Athalye et al. 2018), so an adaptive attacker can
optimise through rounding, medians and masks: ``x + (f(x) - x).detach()``.

>>> import torch
>>> from patchscope.models import create_model
>>> model = create_model("gtsrb-cnn")
>>> MedianDefense(model, kernel=3)(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 43])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d, median_blur, spatial_gradient
from torch import nn

from patchscope.defenses.registry import DEFENSES, register_defense
from patchscope.errors import PatchscopeError
from patchscope.validate import check_int, check_positive, check_range


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the identity's gradient (w.r.t. ``x``) in the backward pass.

    >>> x = torch.rand(1, 3, 4, 4, requires_grad=True)
    >>> straight_through(x, x.round()).sum().backward(); bool((x.grad == 1).all())
    True
    """
    return x + (y - x).detach()


class InputDefense(nn.Module):
    """Base class: ``model(clean(x))``; subclasses implement :meth:`clean` (N,3,H,W) -> (N,3,H,W) in [0,1].

    ``name`` is the model's name and the defense's registered name: ``gtsrb-cnn+jpeg``.
    """

    def __init__(self, model: nn.Module, bpda: bool = False) -> None:
        super().__init__()
        self.model = model
        self.bpda = bpda
        self.classes = tuple(getattr(model, "classes", ()))
        self.input_size = int(getattr(model, "input_size", 32))
        self.name = f"{getattr(model, 'name', 'model')}+{DEFENSES.name_of(type(self)) or 'input'}"

    def clean(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """The cleaned images (N,3,H,W), exact forward; straight-through gradient when ``bpda``."""
        y = self.clean(x)
        return straight_through(x, y) if self.bpda else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


#: the largest filter side a defense accepts (it must also fit the image: see :func:`_fits`)
MAX_KERNEL = 255


def _odd_kernel(kernel: object) -> int:
    k = check_int("kernel", kernel, 1, MAX_KERNEL)
    if k % 2 == 0:
        raise PatchscopeError(f"kernel must be an odd side in 1..{MAX_KERNEL}, got {k}", params=("kernel",))
    return k


def _fits(kernel: int, x: torch.Tensor) -> None:
    if kernel // 2 >= min(x.shape[-2:]):
        raise PatchscopeError(
            f"kernel must be smaller than twice the {min(x.shape[-2:])}px image side, got {kernel}", params=("kernel",)
        )


@register_defense("jpeg")
class JpegDefense(InputDefense):
    """JPEG compression of the input (kornia's differentiable codec).

    Its rounding is a smooth polynomial, so gradients exist even without ``bpda``; ``bpda`` makes them the identity's.

    Args:
        quality: the JPEG quality, 1-100.
    """

    def __init__(self, model: nn.Module, quality: float = 75.0, bpda: bool = False) -> None:
        super().__init__(model, bpda)
        self.quality = check_range("quality", quality, 1.0, 100.0)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.full((x.shape[0],), self.quality, device=x.device, dtype=x.dtype)
        return jpeg_codec_differentiable(x, q).clamp(0, 1)


@register_defense("blur")
class BlurDefense(InputDefense):
    """Gaussian blur of the input (differentiable; reflect border).

    Args:
        sigma: the blur's standard deviation in px.
        kernel: the odd filter side in px.
    """

    def __init__(self, model: nn.Module, sigma: float = 1.0, kernel: int = 5, bpda: bool = False) -> None:
        super().__init__(model, bpda)
        self.sigma, self.kernel = check_range("sigma", sigma, 0.0, 100.0, low_open=True), _odd_kernel(kernel)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        _fits(self.kernel, x)
        return gaussian_blur2d(x, self.kernel, (self.sigma, self.sigma))


@register_defense("median", bpda=True)
class MedianDefense(InputDefense):
    """Median filter over square windows (reflect border); gradients are sparse, use ``bpda``.

    Args:
        kernel: the odd window side in px.
    """

    def __init__(self, model: nn.Module, kernel: int = 3, bpda: bool = False) -> None:
        super().__init__(model, bpda)
        self.kernel = _odd_kernel(kernel)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        _fits(self.kernel, x)
        return median_blur(x, self.kernel)


@register_defense("bits", bpda=True)
class BitDepthDefense(InputDefense):
    """Colour-depth reduction (feature squeezing); zero gradient, use ``bpda``.

    Args:
        bits: the colour depth per channel, 1-8.
    """

    def __init__(self, model: nn.Module, bits: int = 4, bpda: bool = False) -> None:
        super().__init__(model, bpda)
        self.bits = check_int("bits", bits, 1, 8)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return torch.round(x.clamp(0, 1) * levels) / levels


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """First-order gradient magnitude, mean over channels, scaled to [0,1] per image: (N,3,H,W) -> (N,1,H,W).

    Each image is divided by its largest magnitude, but by no less than one grey level (1/255), so a
    flat image stays near 0 instead of having its rounding noise blown up to 1.

    >>> gradient_magnitude(torch.rand(2, 3, 8, 8)).amax((1, 2, 3))
    tensor([1., 1.])
    """
    g = spatial_gradient(x, mode="diff", order=1)  # (N, C, 2, H, W)
    mag = g.pow(2).sum(2).clamp_min(1e-12).sqrt().mean(1, keepdim=True)
    return mag / mag.amax((1, 2, 3), keepdim=True).clamp_min(1 / 255)


@register_defense("lgs", bpda=True)
class LocalGradientSmoothing(InputDefense):
    """Local Gradient Smoothing (Naseer et al., WACV 2019), batched.

    The normalised gradient magnitude ``g`` is cut into overlapping ``window`` x ``window`` blocks
    (``stride`` apart, zero-padded to cover the border); blocks whose mean exceeds ``threshold``
    keep their ``g``, the rest is zeroed, giving ``g_hat``. The output is
    ``x * clamp(1 - smoothing * g_hat, 0, 1)``: high-frequency regions (where patches live) are
    suppressed. Masking by a threshold has no useful gradient: use ``bpda`` for adaptive attacks.

    Args:
        window: the window side in px.
        stride: px between windows.
        threshold: the mean normalised gradient above which a window is suppressed, 0-1.
        smoothing: how strongly a suppressed pixel is damped.
    """

    def __init__(
        self,
        model: nn.Module,
        window: int = 5,
        stride: int = 2,
        threshold: float = 0.1,
        smoothing: float = 2.3,
        bpda: bool = False,
    ) -> None:
        super().__init__(model, bpda)
        self.window = check_positive("window", window, MAX_KERNEL)
        self.stride = check_int("stride", stride, 1, self.window)
        self.threshold = check_range("threshold", threshold, 0.0, 1.0)
        self.smoothing = check_range("smoothing", smoothing, 0.0, 1e3, low_open=True)

    def suppression_map(self, x: torch.Tensor) -> torch.Tensor:
        """``g_hat`` (N,1,H,W) in [0,1]: the gradient magnitude kept in above-threshold windows."""
        g = gradient_magnitude(x)
        h, w = g.shape[-2:]
        k, s = self.window, self.stride
        ph, pw = (-(h - k) % s) if h > k else k - h, (-(w - k) % s) if w > k else k - w
        padded = F.pad(g, (0, pw, 0, ph))
        means = F.avg_pool2d(padded, k, s)  # (N, 1, Hb, Wb) block means
        active = (means > self.threshold).to(g.dtype)
        cover = F.conv_transpose2d(active, torch.ones(1, 1, k, k, device=g.device, dtype=g.dtype), stride=s)
        return g * (cover[..., :h, :w] > 0)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 - self.smoothing * self.suppression_map(x)).clamp(0, 1)
