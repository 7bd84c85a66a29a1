import time

import torch

from patchscope.models import create_model

for name in ["gtsrb-vit", "gtsrb-resnet", "gtsrb-cnn"]:
    m = create_model(name)
    m.train()
    x = torch.rand(128, 3, 32, 32)
    y = torch.randint(0, 43, (128,))
    for prec in ["fp32", "bf16"]:

        def step():
            if prec == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = m(x)
            else:
                out = m(x)
            torch.nn.functional.cross_entropy(out.float(), y).backward()

        step()
        t = time.time()
        n = 3
        for _ in range(n):
            step()
        dt = (time.time() - t) / n
        with torch.no_grad():
            t = time.time()
            for _ in range(n):
                if prec == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        m(x)
                else:
                    m(x)
            df = (time.time() - t) / n
        print(name, prec, f"train {128 / dt:.0f} img/s, fwd {128 / df:.0f} img/s", flush=True)
