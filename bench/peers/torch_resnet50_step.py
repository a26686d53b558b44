#!/usr/bin/python3
"""PyTorch peer for wolfpack's training benchmarks: torchvision ResNet-50 (2 classes) images/s on this
CPU for one kind of step, at any image size and batch (../shared/peers/peer_resnet50_cpu.py is fixed
at 224x224 and has no frozen-backbone step). Measured as that script measures: one untimed warm-up,
then the median of --reps timed runs.

    /usr/bin/python3 bench/peers/torch_resnet50_step.py --threads 2 --batch 18 --size 64 --mode frozen

--mode forward   eval-mode forward pass, no gradients
--mode frozen    the lab's transfer step: backbone in eval mode under no_grad, then the fc head's
                 forward, cross-entropy, backward and momentum SGD (lr 1e-3, momentum 0.9) on fc only
--mode full      full fine-tuning step: train mode, forward, backward, momentum SGD on every parameter
Prints one JSON line.
"""
import argparse
import json
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=18)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--mode", choices=["forward", "frozen", "full"], default="frozen")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = torchvision.models.resnet50(num_classes=2)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, 2, (a.batch,))
    backbone = torch.nn.Sequential(*list(m.children())[:-1])

    if a.mode == "forward":
        m.eval()

        def step():
            with torch.no_grad():
                m(x)
    elif a.mode == "frozen":
        m.eval()
        opt = torch.optim.SGD(m.fc.parameters(), lr=1e-3, momentum=0.9)

        def step():
            with torch.no_grad():
                f = torch.flatten(backbone(x), 1)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m.fc(f), y).backward()
            opt.step()
    else:
        opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        m.train()

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()

    step()
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(json.dumps({"bench": "torch_resnet50_step", "torch": torch.__version__, "mode": a.mode, "threads": a.threads,
                      "batch": a.batch, "size": a.size, "reps": a.reps, "median_s": med, "img_s": a.batch / med, "times_s": times}))


if __name__ == "__main__":
    main()
