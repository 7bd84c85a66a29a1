"""patchscope's universal patch attack against IBM ART's ``AdversarialPatchPyTorch``, same settings, one run.

    pip install -e .[bench]
    python bench/vs_art.py --model gtsrb-cnn --batch-size 256 --steps 300 --device cpu --json

Both tools optimise one square patch (``--size`` of the image area: 7 px on 32 px for 5%) for a
targeted Stop (14) -> Yield (13) attack on the same pool of Stop images from ``gtsrb:train``, with
the same model, batch, number of steps, optimiser and learning rate, random location, rotation in
``+-rotation`` degrees and scale in ``[scale-min, scale-max]`` times the nominal side, and nothing
else (no camera, light, blur or noise: patchscope's ``sticker`` placement on ``NO_CHANGE`` ranges;
ART with ``distortion_scale_max=0``). Model weights are frozen for both, so neither pays for weight
gradients. Each tool runs three times: a 1-step throwaway, ``--warmup`` steps, and the full
``--steps``; the time per step is (full - warm-up) / (steps - warmup), as bench/attack_step.py does.

Success is graded by one shared function, not by either tool: each final patch is pasted with
patchscope's sticker placement (``paste``, bilinear) at ``--eval-views`` random locations, rotations
and scales (the same draws for both patches) on the held-out Stop images of ``gtsrb:test``; it
reports the share classified as Yield (``success``), the share no longer read as Stop (``fooled``)
and the mean Yield probability, also for the clean images. As a cross-check, both patches are also
pasted with ART's own ``apply_patch`` (random location and rotation, nominal scale, same seeds for
both) and graded the same way.
Without the GTSRB data the script falls back, saying so, to the bundled demo set (its Stop images
split in half: one half attacked, the other held out).

What cannot be matched exactly, and how it is handled:

* Learning rate: both get ``--lr`` with the same optimiser (``adam`` -> ART ``"Adam"``; ``sign`` ->
  ART ``"pgd"``, which steps ``lr * sign(grad)`` like patchscope's SignSGD). ART keeps ``lr``
  constant; patchscope always decays it on a cosine to 5% of ``lr`` (not configurable). ART's
  default ``learning_rate=5.0`` is not used: it would saturate a [0,1] patch at every step.
* Scale: ART's ``scale_min/scale_max`` are fractions of the image side (the patch is first resized
  to the whole image, then shrunk), patchscope's are multiples of the patch side; the script passes
  ART ``scale * side / image_size`` so both draw the same pixel sizes.
* Resampling: ART resizes the 7 px patch bilinearly to 32 px and places it with a NEAREST affine
  warp (torchvision, one image at a time); patchscope warps the 7 px patch bilinearly (kornia,
  batched). The shared grader uses patchscope's warp, hence the ART-placement cross-check.
* Location: ART draws a continuous shift that keeps the unrotated patch inside the image;
  patchscope draws an integer top-left corner in the same range.
* Batches: ART walks its data set epoch by epoch (shuffled, without replacement); patchscope draws
  each batch with replacement. To keep the step count and batch size identical, both get the same
  pool of m * batch images, m being the largest divisor of ``--steps`` with m * batch <= the Stop
  images available, and ART runs ``steps / m`` epochs (if there are fewer Stop images than one
  batch, the pool is filled to one batch by drawing with replacement).
* Data on the device: patchscope keeps the pool on ``--device``; ART takes numpy arrays and copies
  each batch from the host (its own design, so it is part of its step time on a GPU).
* Start: ART starts from a mid-grey patch (its fixed initial value), patchscope from uniform noise.
* Candidates: patchscope runs one candidate (``candidates=1``), like ART.
* Loss: mean cross-entropy to the target for both (patchscope ``loss="ce"``).
* BatchNorm: patchscope's attack folds eval-mode BatchNorm into the convolutions (``fold_batchnorm``), the same
  function with less work. With ``--rounds`` the interleaved timing also runs ART on the folded model
  (``art_folded_model``), so the share of the speed-up that folding alone buys is visible.
* Precision: both run in float32. ``--bf16`` adds a patchscope row under bf16 autocast (channels-last
  on a CPU), which ART does not offer; it is reported beside the float32 row, never instead of it.

Run by hand; never part of the unit suite. ART is a bench-only extra, not a runtime dependency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

try:
    import art
    from art.attacks.evasion.adversarial_patch.adversarial_patch_pytorch import AdversarialPatchPyTorch
    from art.estimators.classification import PyTorchClassifier
except ImportError:
    art = None

from patchscope.attacks import NO_CHANGE, AttackConfig, PatchAttack, ViewRanges, paste, patch_side, sample_view
from patchscope.data import load_data
from patchscope.errors import PatchscopeError
from patchscope.models import create_model
from patchscope.models.fold import fold_batchnorm


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def stop_images(source: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(attack images, held-out images) of class ``source`` as uint8, and where they came from."""
    try:
        train, test = load_data("gtsrb:train").of_class(source), load_data("gtsrb:test").of_class(source)
        if len(train) and len(test):
            return train.images, test.images, "gtsrb:train / gtsrb:test"
        why = f"no images of class {source}"
    except PatchscopeError as e:
        why = str(e)
    print(
        f"vs_art: GTSRB not available ({why}); falling back to the bundled demo set, split in half "
        "(numbers not comparable to a GTSRB run)",
        file=sys.stderr,
    )
    demo = load_data("demo").of_class(source)
    if len(demo) < 2:
        raise SystemExit(f"vs_art: the demo set holds {len(demo)} images of class {source}; need at least 2")
    order = torch.randperm(len(demo), generator=torch.Generator().manual_seed(seed))
    half = len(demo) // 2
    return demo.images[order[:half]], demo.images[order[half:]], "demo (halves)"


def plan(n_images: int, batch: int, steps: int) -> tuple[int, int]:
    """(batches per ART epoch m, epochs): m divides ``steps`` and m * batch <= n_images (m >= 1)."""
    cap = max(1, min(steps, n_images // batch))
    m = max(d for d in range(1, cap + 1) if steps % d == 0)
    return m, steps // m


def make_pool(images: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` images from ``images``: a random subset, or a draw with replacement if there are too few."""
    g = torch.Generator().manual_seed(seed)
    idx = (
        torch.randperm(len(images), generator=g)[:size]
        if len(images) >= size
        else torch.randint(len(images), (size,), generator=g)
    )
    return images[idx]


def run_patchscope(
    model: torch.nn.Module,
    pool: torch.Tensor,
    steps: int,
    a: argparse.Namespace,
    ranges: ViewRanges,
    compile: bool = False,
    precision: str = "fp32",
) -> tuple[float, torch.Tensor]:
    """Seconds for one whole attack of ``steps`` steps on ``pool`` (float, on device), and its patch."""
    labels = torch.full((len(pool),), a.source, dtype=torch.long, device=pool.device)
    cfg = AttackConfig(
        size=a.size,
        shape="square",
        placement="sticker",
        location=None,
        target=a.target,
        loss="ce",
        optimizer=a.optimizer,
        lr=a.lr,
        steps=steps,
        batch_size=a.batch_size,
        candidates=1,
        ranges=ranges,
        seed=a.seed,
        compile=compile,
        precision=precision,
    )
    _sync(a.device)
    t = time.perf_counter()
    patch = PatchAttack(model, cfg, a.device, progress=False)(pool, labels)
    _sync(a.device)
    return time.perf_counter() - t, patch.pixels.detach().cpu()


def run_art(
    classifier: PyTorchClassifier, pool: np.ndarray, epochs: int, side: int, a: argparse.Namespace
) -> tuple[float, torch.Tensor, AdversarialPatchPyTorch]:
    """Seconds for one whole ``generate`` of ``epochs`` passes over ``pool`` (numpy NCHW float32), its patch,
    the attack."""
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    y = np.full(len(pool), a.target, dtype=np.int64)
    _sync(a.device)
    t = time.perf_counter()
    attack = AdversarialPatchPyTorch(
        classifier,
        rotation_max=a.rotation,
        scale_min=a.scale_min * side / a.image_size,
        scale_max=a.scale_max * side / a.image_size,
        distortion_scale_max=0.0,
        learning_rate=a.lr,
        max_iter=epochs,
        batch_size=a.batch_size,
        patch_shape=(3, side, side),
        patch_type="square",
        optimizer="Adam" if a.optimizer == "adam" else "pgd",
        targeted=True,
        verbose=False,
    )
    patch, _ = attack.generate(x=pool, y=y)
    _sync(a.device)
    return time.perf_counter() - t, torch.from_numpy(patch).float(), attack


@torch.no_grad()
def success_sticker(
    model: torch.nn.Module,
    images: torch.Tensor,
    pixels: torch.Tensor,
    side: int,
    ranges: ViewRanges,
    a: argparse.Namespace,
) -> dict[str, float]:
    """The shared grader over ``images`` x ``eval_views`` sticker views: share classified as the target
    (``success``), share no longer classified as the source (``fooled``), mean target probability."""
    x = images.repeat(a.eval_views, 1, 1, 1)
    g = torch.Generator(device=a.device).manual_seed(a.seed + 1)
    views = sample_view(len(x), ranges, x.shape[-1], side, "sticker", None, g)
    mask = torch.ones(side, side, device=a.device)
    pix = pixels.to(a.device)
    hits = fooled = prob = 0.0
    for start in range(0, len(x), 1024):
        part = slice(start, start + 1024)
        logits = model(paste(x[part], pix, mask, views[part]))
        hits += float((logits.argmax(1) == a.target).sum())
        fooled += float((logits.argmax(1) != a.source).sum())
        prob += float(logits.softmax(1)[:, a.target].sum())
    return {
        "success": round(hits / len(x), 4),
        "fooled": round(fooled / len(x), 4),
        "target_prob": round(prob / len(x), 4),
    }


@torch.no_grad()
def success_art_placement(
    model: torch.nn.Module,
    attack: AdversarialPatchPyTorch,
    images: torch.Tensor,
    pixels: torch.Tensor,
    side: int,
    a: argparse.Namespace,
) -> float:
    """Cross-check: the same, pasted by ART's ``apply_patch`` (random place and rotation, nominal scale)."""
    np.random.seed(a.seed + 1)
    torch.manual_seed(a.seed + 1)
    x = images.repeat(a.eval_views, 1, 1, 1).cpu().numpy()
    patched = attack.apply_patch(x, scale=side / a.image_size, patch_external=pixels.numpy())
    hits = 0
    for start in range(0, len(patched), 1024):
        hits += int((model(torch.from_numpy(patched[start : start + 1024]).to(a.device)).argmax(1) == a.target).sum())
    return hits / len(patched)


#: a timed tool: run(steps, short) -> (seconds, patch, ...); short runs see one batch
Run = Callable[[int, bool], tuple[Any, ...]]


def timed(run: Run, steps: int, warmup: int) -> tuple[float, tuple[Any, ...]]:
    """ms per step of ``run(steps)`` less a ``warmup``-step run (after a 1-step throwaway), and the full run's
    output."""
    run(1, True)
    short = run(warmup, True)[0] if warmup else 0.0
    full = run(steps, False)
    return (full[0] - short) / (steps - warmup) * 1e3, full


def interleaved_ms(tools: dict[str, Run], rounds: int, steps: int) -> dict[str, float]:
    """Median ms per step of each tool over ``rounds`` rounds that take the tools in turn, each a ``steps``-step run
    on one batch less a 1-step run: load that drifts over minutes (a shared machine) then hits every tool alike."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(rounds):
        for name, run in tools.items():
            one = run(1, True)[0]
            times[name].append((run(steps + 1, True)[0] - one) / steps * 1e3)
    return {name: round(statistics.median(t), 2) for name, t in times.items() if t}


def parse_args() -> argparse.Namespace:
    """The command line; exits 2 without IBM ART. Sets torch's threads and the current CUDA device as asked."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gtsrb-cnn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="steps of the short run subtracted from the full one (clamped to steps - 1)",
    )
    ap.add_argument("--size", type=float, default=0.05, help="patch area as a fraction of the image")
    ap.add_argument("--rotation", type=float, default=20.0, help="patch rotation range, +- degrees")
    ap.add_argument("--scale-min", type=float, default=0.9, help="smallest patch scale, times the nominal side")
    ap.add_argument("--scale-max", type=float, default=1.1)
    ap.add_argument(
        "--optimizer", choices=("adam", "sign"), default="adam", help="adam (ART 'Adam') or sign (ART 'pgd')"
    )
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--source", type=int, default=14, help="class attacked (14 Stop)")
    ap.add_argument("--target", type=int, default=13, help="target class (13 Yield)")
    ap.add_argument("--eval-views", type=int, default=4, help="random placements per held-out image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time patchscope with AttackConfig(compile=True) (CUDA graphs on a GPU)",
    )
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="also time patchscope with AttackConfig(precision='bf16') (bf16 autocast, channels-last on a CPU)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="also time every tool in R interleaved rounds of --round-steps steps (median): robust to a busy machine",
    )
    ap.add_argument("--round-steps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if art is None:
        print(
            "bench/vs_art.py needs IBM ART (adversarial-robustness-toolbox): pip install -e .[bench]", file=sys.stderr
        )
        sys.exit(2)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and ":" in a.device:
        torch.cuda.set_device(torch.device(a.device))  # ART uses the current CUDA device
    return a


def interleaved_summary(step_ms: dict[str, float], a: argparse.Namespace) -> dict[str, Any]:
    """The JSON entry for the interleaved rounds: their settings, ms per step and ART's speed-ups."""
    return {
        "rounds": a.rounds,
        "steps": a.round_steps,
        "step_ms": step_ms,
        **{
            f"speedup_art_over_{k}": round(step_ms["art"] / v, 3)
            for k, v in step_ms.items()
            if k.startswith("patchscope")
        },
    }


@torch.no_grad()
def clean_scores(model: torch.nn.Module, images: torch.Tensor, a: argparse.Namespace) -> dict[str, float]:
    """The clean ``images``' share read as the target, share not read as the source, and mean target probability."""
    logits = model(images)
    return {
        "success": round(float((logits.argmax(1) == a.target).float().mean()), 4),
        "fooled": round(float((logits.argmax(1) != a.source).float().mean()), 4),
        "target_prob": round(float(logits.softmax(1)[:, a.target].mean()), 4),
    }


def main() -> None:
    a = parse_args()
    warmup = max(0, min(a.warmup, a.steps - 1))

    model = create_model(a.model, a.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    a.image_size = model.input_size
    side = patch_side(a.size, a.image_size, "square")
    ranges = replace(NO_CHANGE, patch_rotation=a.rotation, patch_scale=(a.scale_min, a.scale_max))
    train, test, source = stop_images(a.source, a.seed)
    m, epochs = plan(len(train), a.batch_size, a.steps)
    pool = make_pool(train, m * a.batch_size, a.seed).to(a.device).float().div_(255)
    test_x = test.to(a.device).float().div_(255)
    if train.shape[-1] != a.image_size:
        raise SystemExit(f"vs_art: the data is {train.shape[-1]} px, the model takes {a.image_size} px")

    def art_classifier(net: torch.nn.Module) -> PyTorchClassifier:
        return PyTorchClassifier(
            model=net,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=(3, a.image_size, a.image_size),
            nb_classes=len(model.classes),
            clip_values=(0.0, 1.0),
            device_type="gpu" if a.device.startswith("cuda") else "cpu",
        )

    classifier = art_classifier(model)
    pool_np = pool.cpu().numpy()

    def patchscope_run(options: dict[str, Any]) -> Run:
        def run(steps: int, short: bool) -> tuple[float, torch.Tensor]:
            return run_patchscope(model, pool[: a.batch_size] if short else pool, steps, a, ranges, **options)

        return run

    def ar(steps: int, short: bool) -> tuple[float, torch.Tensor, AdversarialPatchPyTorch]:
        # the short runs see one batch per epoch, so epochs = steps; the full run walks the pool
        return (
            run_art(classifier, pool_np[: a.batch_size], steps, side, a)
            if short
            else run_art(classifier, pool_np, epochs, side, a)
        )

    # the same attack as it is, compiled (its throwaway run pays for the compilation) and in bf16
    variants = (
        {"patchscope": {}}
        | ({"patchscope_compiled": {"compile": True}} if a.compile else {})
        | ({"patchscope_bf16": {"precision": "bf16"}} if a.bf16 else {})
    )
    tools = {label: patchscope_run(options) for label, options in variants.items()}
    runs = []
    for label, run in tools.items():
        ms, (_, patch) = timed(run, a.steps, warmup)
        runs.append((label, ms, patch))
    ps_ms = runs[0][1]
    art_ms, (_, art_patch, art_attack) = timed(ar, a.steps, warmup)
    tools = {"art": ar, **tools}
    folded = fold_batchnorm(model)
    if a.rounds and folded is not model:  # patchscope folds BatchNorm into the convolutions; ART, handed it too
        art_folded = art_classifier(folded)
        tools["art_folded_model"] = lambda steps, short: run_art(art_folded, pool_np[: a.batch_size], steps, side, a)
    interleaved = interleaved_ms(tools, a.rounds, a.round_steps)

    clean = clean_scores(model, test_x, a)
    rows = {}
    for name, ms, pixels in (*runs, ("art", art_ms, art_patch)):
        rows[name] = {
            "step_ms": round(ms, 2),
            "images_per_s": round(a.batch_size / ms * 1e3, 1),
            **success_sticker(model, test_x, pixels, side, ranges, a),
            "success_art_placement": round(success_art_placement(model, art_attack, test_x, pixels, side, a), 4),
        }
    speedup = art_ms / ps_ms
    out = {
        "model": a.model,
        "device": a.device,
        "threads": torch.get_num_threads(),
        "art_version": art.__version__,
        "data": source,
        "attack_images": len(train),
        "pool": len(pool),
        "art_epochs": epochs,
        "held_out": len(test_x),
        "eval_views": a.eval_views,
        "batch": a.batch_size,
        "steps": a.steps,
        "warmup": warmup,
        "side": side,
        "rotation": a.rotation,
        "scale": [a.scale_min, a.scale_max],
        "art_scale": [a.scale_min * side / a.image_size, a.scale_max * side / a.image_size],
        "optimizer": a.optimizer,
        "lr": a.lr,
        "source": a.source,
        "target": a.target,
        "clean": clean,
        "rows": rows,
        "speedup_art_over_patchscope": round(speedup, 3),
    }
    if interleaved:
        out["interleaved"] = interleaved_summary(interleaved, a)
    out.update({f"speedup_art_over_{label}": round(art_ms / ms, 3) for label, ms, _ in runs[1:]})
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print_text(out, a, [(label, art_ms / ms) for label, ms, _ in runs])


def print_text(out: dict[str, Any], a: argparse.Namespace, speedups: list[tuple[str, float]]) -> None:
    """The human-readable form of ``main``'s results ``out``; ``speedups`` holds (label, ART ms / its ms), the plain
    patchscope run first."""
    clean = out["clean"]
    print(
        f"{a.model} on {a.device} ({out['threads']} threads), data {out['data']}: "
        f"pool {out['pool']} of {out['attack_images']} Stop images, "
        f"batch {a.batch_size}, {a.steps} steps, {out['side']}px patch, rotation +-{a.rotation:g}, "
        f"scale {a.scale_min:g}-{a.scale_max:g}, {a.optimizer} lr {a.lr:g}"
    )
    print(
        f"held out: {out['held_out']} Stop images x {a.eval_views} views; clean: as {a.target} {clean['success']:.3f}, "
        f"not {a.source} {clean['fooled']:.3f}, p({a.target}) {clean['target_prob']:.3f}"
    )
    for name, r in out["rows"].items():
        label = name if name.startswith("patchscope") else f"ART {out['art_version']}"
        print(
            f"{label:20s} step {r['step_ms']:9.2f} ms  {r['images_per_s']:9.0f} img/s  "
            f"success {r['success']:.3f}  fooled {r['fooled']:.3f}  "
            f"p({a.target}) {r['target_prob']:.3f}  (success under ART placement {r['success_art_placement']:.3f})"
        )
    if "interleaved" in out:
        print(
            f"interleaved ({a.rounds} rounds of {a.round_steps} steps, median ms/step): "
            + ", ".join(f"{k} {v:.1f}" for k, v in out["interleaved"]["step_ms"].items())
        )
    print(
        f"speed-up ART/patchscope: {speedups[0][1]:.2f}x"
        + "".join(f"; {label[11:]}: {speedup:.2f}x" for label, speedup in speedups[1:])
    )


if __name__ == "__main__":
    main()
