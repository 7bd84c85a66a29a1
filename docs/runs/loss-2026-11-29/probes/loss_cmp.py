"""Fixed place, different surrogate losses; train-subset and test success over the default grid."""
import json, sys, time, torch
import patchscope.attacks.scoring as U
from patchscope.data import load_data
from patchscope.models import create_model
from patchscope.attacks import AttackConfig, PatchAttack
from patchscope.eval.patch_metrics import patch_success
torch.set_num_threads(2)
model_name, shape, size, steps, top, left, kinds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7].split(","), sys.argv[8]
bs = int(sys.argv[9]) if len(sys.argv) > 9 else 64
seed = int(sys.argv[10]) if len(sys.argv) > 10 else 0
model = create_model(model_name)
tr = load_data("gtsrb:train").of_class("stop"); te = load_data("gtsrb:test").of_class("stop")
xtr, ytr, xte, yte = tr.float_images(), tr.labels, te.float_images(), te.labels
sel = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(1))[:200]
orig = U.attack_loss
def make(kind):
    def loss(logits, labels, target, k, kappa):
        if kind.startswith("sig"):  # sigmoid of the margin gap / T: a bounded 0-1 surrogate
            T = float(kind[3:] or 1)
            gap = orig(logits, labels, target, "margin", 1e9)
            return torch.sigmoid(gap / T)
        if kind == "prob":
            return -logits.softmax(1)[:, target]
        if kind.startswith("mix"):  # CE + sigmoid
            gap = orig(logits, labels, target, "margin", 1e9)
            return torch.sigmoid(gap) + 0.1 * orig(logits, labels, target, "ce", 0)
        return orig(logits, labels, target, kind, kappa)
    return loss
res = []
for kind in kinds:
    U.attack_loss = make(kind)
    t0 = time.time()
    cfg = AttackConfig(size=size, shape=shape, target=13, steps=steps, precision="bf16", location=(top, left), batch_size=bs, seed=seed)
    p = PatchAttack(model, cfg, progress=False)(xtr, ytr)
    U.attack_loss = orig
    s_tr = patch_success(model, xtr[sel], ytr[sel], p, 13).targeted_success
    s_te = patch_success(model, xte, yte, p, 13)
    res.append({"kind": kind, "train": s_tr, "test": s_te.targeted_success, "conf": s_te.target_confidence, "s": time.time() - t0, "top": top, "left": left, "steps": steps, "bs": bs, "seed": seed})
    print(res[-1], flush=True)
    json.dump(res, open(out, "w"), indent=1)
    torch.save(p.pixels, out + f".{kind}.pt")
