"""Train the embedded demo model ``tiny_sr`` (EDSR-style, ×2) on CPU in a few minutes.

    python demo/train_tiny_sr.py [--out demo/tiny_sr_x2.pt] [--iters 1500] [--seed 0]

Training images are scikit-image's bundled sample images (``skimage.data``, shipped
inside the wheel, no download). The evaluation images (astronaut, chelsea, coffee)
are never trained on; the demo calibrates on a subset of the training images, so
calibration and evaluation are disjoint. LR inputs are MATLAB-compatible bicubic
downsamples (``calib.bicubic``), as for the benchmark sets.

Reproducible: fixed seed, one thread order (``torch.use_deterministic_algorithms``),
``torch.set_num_threads(--threads)``. The weights are saved as a plain state dict
of tensors (``torch.save``; load with ``weights_only=True``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from reports.demo import (EVAL_FILES, TINY_SR, TINY_SR_SCALE as SCALE, TRAIN_FILES,  # noqa: E402,F401
                          build_tiny_sr, load_sample)
from reports.demo import lr_hr_pair as _pair  # noqa: E402


def lr_hr_pair(hr: np.ndarray, scale: int = SCALE) -> tuple[np.ndarray, np.ndarray]:
    return _pair(hr, scale)


def train(out: Path, iters: int = 4000, seed: int = 0, patch: int = 32, batch: int = 16, threads: int = 2,
          lr: float = 2e-3, log=print) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    pairs = []
    for name in TRAIN_FILES:
        lr_img, hr_img = lr_hr_pair(load_sample(name))
        pairs.append((torch.from_numpy(lr_img.transpose(2, 0, 1).copy()).float(),
                      torch.from_numpy(hr_img.transpose(2, 0, 1).copy()).float()))
    net = build_tiny_sr()
    # Start the upsampler near a smooth interpolation: small init everywhere helps a tiny net converge fast.
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=lr * 0.02)
    t0 = time.time()
    net.train()
    for it in range(iters):
        xs, ys = [], []
        for _ in range(batch):
            lr_t, hr_t = pairs[int(rng.integers(len(pairs)))]
            h, w = lr_t.shape[1:]
            i, j = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
            x = lr_t[:, i:i + patch, j:j + patch]
            y = hr_t[:, i * SCALE:(i + patch) * SCALE, j * SCALE:(j + patch) * SCALE]
            if rng.random() < 0.5:
                x, y = x.flip(2), y.flip(2)
            if rng.random() < 0.5:
                x, y = x.flip(1), y.flip(1)
            if rng.random() < 0.5:
                x, y = x.transpose(1, 2), y.transpose(1, 2)
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        loss = (net(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 100 == 0 or it == iters - 1:
            log(f"iter {it:5d}  L1 {loss.item():.3f}  {time.time() - t0:.0f} s")
    net.eval()
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    import io

    from intsim.artifact import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(sd, buf)
    atomic_write_bytes(out, buf.getvalue())
    res = evaluate(net)
    res.update({"iters": iters, "seed": seed, "seconds": round(time.time() - t0, 1), "weights": str(out),
                "bytes": out.stat().st_size})
    return res


def evaluate(net) -> dict:
    """Y-PSNR (border = scale) of the float model and of MATLAB bicubic on the evaluation images."""
    import torch

    from calib.bicubic import bicubic_upsample_rounded
    from calib.metrics import psnr_y

    rows = {}
    for name in EVAL_FILES:
        lr_img, hr_img = lr_hr_pair(load_sample(name))
        with torch.no_grad():
            sr = net(torch.from_numpy(lr_img.transpose(2, 0, 1).copy()).float()[None])[0]
        sr = sr.clamp(0, 255).round().byte().numpy().transpose(1, 2, 0)
        rows[name] = {"tiny_sr": psnr_y(sr, hr_img, SCALE),
                      "bicubic": psnr_y(bicubic_upsample_rounded(lr_img, SCALE), hr_img, SCALE)}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("tiny_sr", "bicubic")}
    return {"per_image": rows, "mean": mean}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "tiny_sr_x2.pt"))
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    res = train(Path(a.out), iters=a.iters, seed=a.seed, threads=a.threads)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
