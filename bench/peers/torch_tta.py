#!/usr/bin/python3
"""PyTorch peer for `wolfpack bench tta`: the demo's transfer-learning recipe (the lab's "fixed features"
variant) written in plain PyTorch, timed to a target validation accuracy.

    /usr/bin/python3 bench/peers/torch_tta.py --data runs/demo/data --weights W.safetensors --out best.pt

The recipe, as wolfpack's demo runs it:
  model      ResNet-50 v1.5, MindSpore flavour (TF-style SAME padding on every conv and the stem max-pool,
             BatchNorm eps 1e-4), built by test/fixtures/resnet/gen_resnet_fixtures.py (imported, not
             copied), weights from a .safetensors file with MindSpore names (conv1.weight, bn1.gamma,
             layer1.0.down_sample_layer.1.moving_mean, end_point.weight, ...)
  head       the file's head (end_point.*) dropped, a fresh Linear(2048, K) initialised as wolfpack and
             the lab initialise it (weights N(0, 0.01), bias 0)
  frozen     every backbone parameter requires_grad=False and the whole model in eval mode (BatchNorm uses
             its moving statistics)
  data       ImageFolder train/val; train: RandomResizedCrop(size) + RandomHorizontalFlip + ToTensor +
             Normalize(ImageNet); eval: Resize(round(size*256/224)) + CenterCrop(size) + ToTensor +
             Normalize (Python's round is half-to-even, as wolfpack's evalGeometry)
  training   DataLoader(batch 18, shuffle, drop_last, num_workers 0), CrossEntropyLoss (mean),
             SGD(lr 0.0002, momentum 0.9), torch.set_num_threads(2)
  epochs     after each, validation accuracy; the best state_dict is saved with torch.save to --out
             (wolfpack writes a checkpoint every epoch); stop at the first epoch with accuracy >= --target
             or after --epochs

Prints one JSON line per epoch {epoch, val_accuracy, train_loss, epoch_s, wall_s, ...} and a final line
{"bench": "torch_time_to_accuracy", reached, epoch, wall_s, ...}. wall_s counts from the process's start
(read from /proc, so the interpreter's start and the imports are included, as wolfpack's wall time counts
from spawning `wolfpack train`); epoch_s is the epoch's training steps plus its evaluation (not the
save); the final line's wall_s and epochs_s are at the target epoch (null when it was not reached).

--check loads the weights with their original head and prints the eval-mode logits of one image (the
first validation image, or --image), and with --check-npy writes that image's eval-transformed input as
an NCHW float32 .npy, for `wolfpack predict --weights FILE --input-tensor X.npy --json` to compare against.
"""
import time

_T0 = time.perf_counter()


def _since_process_start():
    """Seconds between this process's start (/proc/self/stat starttime) and _T0; 0 where /proc is missing."""
    try:
        import os
        with open("/proc/self/stat") as f:
            stat = f.read()
        start_ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after pid and (comm)
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK") - (time.perf_counter() - _T0))
    except (OSError, ValueError, IndexError):
        return 0.0


_START_OFFSET = _since_process_start()


def wall():
    return _START_OFFSET + time.perf_counter() - _T0


import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "test", "fixtures", "resnet"))
import gen_resnet_fixtures as ref  # noqa: E402

# Importing the fixture generator pins one thread and deterministic algorithms (what its fixtures need);
# undo both: the thread count is set from --threads below, and a PyTorch user would not switch them on.
torch.use_deterministic_algorithms(False)

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
_ST_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def read_safetensors(path):
    """{name: tensor} from a .safetensors file: 8-byte little-endian header length, JSON header, raw data."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        dtype = _ST_DTYPES.get(e["dtype"])
        if dtype is None:
            continue  # a dtype torch cannot hold; the model needs none of those
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        if sys.byteorder != "little":
            t = torch.from_numpy(t.numpy().byteswap())
        out[name] = t.reshape(e["shape"])
    return out


def build_model(tensors, keep_head):
    """The MindSpore-flavoured ResNet-50 with the file's weights; the head kept or replaced by a fresh 2-class one."""
    width = tensors["conv1.weight"].shape[0]
    head_classes = tensors["end_point.weight"].shape[0] if "end_point.weight" in tensors else 2
    model = ref.ResNet50(width, head_classes, same=True, eps=1e-4)
    state = {}
    for name, v in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("fc.") and not keep_head:
            state[name] = v
            continue
        ms = ref.ms_name(name)
        if ms not in tensors:
            raise SystemExit("weights file has no tensor %s (for %s)" % (ms, name))
        if tuple(tensors[ms].shape) != tuple(v.shape):
            raise SystemExit("tensor %s: shape %s, expected %s" % (ms, list(tensors[ms].shape), list(v.shape)))
        state[name] = tensors[ms].to(torch.float32)
    model.load_state_dict(state, strict=False)
    return model


def fresh_head(in_features, classes):
    head = nn.Linear(in_features, classes)
    nn.init.normal_(head.weight, 0.0, 0.01)  # the lab's nn.Dense(weight_init=Normal(0.01)), as wolfpack does
    nn.init.zeros_(head.bias)
    return head


def eval_transform(size):
    return transforms.Compose([transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def train_transform(size):
    return transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def check(a):
    model = build_model(read_safetensors(a.weights), keep_head=True).eval()
    image = a.image
    if image is None:
        image = datasets.ImageFolder(os.path.join(a.data, "val")).samples[0][0]
    x = eval_transform(a.size)(datasets.folder.default_loader(image)).unsqueeze(0)
    with torch.no_grad():
        logits = model(x)[0]
    if a.check_npy:
        import numpy as np
        np.save(a.check_npy, x.numpy().astype("<f4"))
    print(json.dumps({"bench": "torch_tta_check", "image": image, "size": a.size, "npy": a.check_npy,
                      "logits": [float(v) for v in logits]}))


def evaluate(model, loader):
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    return correct / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(REPO, "runs", "demo", "data"))
    ap.add_argument("--weights", required=True, help="MindSpore-named ResNet-50 .safetensors")
    ap.add_argument("--out", default=None, help="where torch.save writes the best state_dict")
    ap.add_argument("--target", type=float, default=0.7)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.0002)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=18)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="print one image's logits with the file's own head, then exit")
    ap.add_argument("--image", default=None, help="--check: the image (default: the first validation image)")
    ap.add_argument("--check-npy", default=None, help="--check: write the eval-transformed input here (NCHW float32 .npy)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.check:
        return check(a)

    train_set = datasets.ImageFolder(os.path.join(a.data, "train"), train_transform(a.size))
    val_set = datasets.ImageFolder(os.path.join(a.data, "val"), eval_transform(a.size))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=0)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=a.batch, shuffle=False, num_workers=0)

    model = build_model(read_safetensors(a.weights), keep_head=False)
    for p in model.parameters():
        p.requires_grad = False
    model.fc = fresh_head(model.fc.in_features, len(train_set.classes))
    model.eval()  # frozen BatchNorm; the head has no mode-dependent layer
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=a.lr, momentum=a.momentum)

    setup_s = wall()
    best = -1.0
    hit = None
    hit_wall = None
    epochs_s = 0.0
    epoch = 0
    for epoch in range(1, a.epochs + 1):
        t = time.perf_counter()
        losses = []
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_s = time.perf_counter() - t
        acc = evaluate(model, val_loader)
        epoch_s = time.perf_counter() - t
        epochs_s += epoch_s
        save_s = 0.0
        if acc > best:
            best = acc
            if a.out:
                ts = time.perf_counter()
                torch.save(model.state_dict(), a.out)
                save_s = time.perf_counter() - ts
        steps = len(losses)
        now = wall()
        print(json.dumps({"epoch": epoch, "val_accuracy": acc, "train_loss": sum(losses) / max(steps, 1),
                          "epoch_s": round(epoch_s, 3), "wall_s": round(now, 3), "train_s": round(train_s, 3),
                          "eval_s": round(epoch_s - train_s, 3), "save_s": round(save_s, 3), "steps": steps,
                          "images_per_s": round(steps * a.batch / train_s, 1) if train_s > 0 else None}), flush=True)
        if acc >= a.target:
            hit, hit_wall = epoch, now
            break
    print(json.dumps({"bench": "torch_time_to_accuracy", "torch": torch.__version__, "torchvision": torchvision.__version__,
                      "threads": a.threads, "batch": a.batch, "size": a.size, "lr": a.lr, "momentum": a.momentum,
                      "seed": a.seed, "target": a.target, "max_epochs": a.epochs, "reached": hit is not None,
                      "epoch": hit, "wall_s": round(hit_wall, 3) if hit else None, "total_wall_s": round(wall(), 3),
                      "epochs_s": round(epochs_s, 3) if hit else None,
                      "setup_s": round(setup_s, 3), "epochs_run": epoch, "best_val_accuracy": best,
                      "train_images": len(train_set), "val_images": len(val_set), "out": a.out}), flush=True)


if __name__ == "__main__":
    main()
