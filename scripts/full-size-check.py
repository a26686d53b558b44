#!/usr/bin/python3
"""Full-size ResNet-50 check against PyTorch (issue 2): writes torchvision's resnet50 (random
weights, 2-class head, BN statistics randomised so eval mode is exercised) as safetensors, a
normalised NCHW input x.npy and PyTorch's eval logits, into OUTDIR. Then compare with
    npx wolfpack predict --weights OUTDIR/resnet50.safetensors --input-tensor OUTDIR/x.npy --json
Usage: /usr/bin/python3 scripts/full-size-check.py OUTDIR [BATCH] [SIZE]"""
import json, os, struct, sys
import numpy as np
import torch, torchvision

out = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 2
size = int(sys.argv[3]) if len(sys.argv) > 3 else 224
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(2)
m = torchvision.models.resnet50(num_classes=2)
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_(0, 0.1)
m.eval()
x = torch.randn(batch, 3, size, size)
with torch.no_grad():
    logits = m(x)
sd = {k: v.contiguous().numpy().astype(np.float32) for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
header, off = {}, 0
for k, v in sd.items():
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
    off += v.nbytes
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(os.path.join(out, "resnet50.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for v in sd.values():
        f.write(v.tobytes())
np.save(os.path.join(out, "x.npy"), x.numpy())
np.save(os.path.join(out, "logits_torch.npy"), logits.numpy())
print(json.dumps({"logits": logits.tolist()}))
