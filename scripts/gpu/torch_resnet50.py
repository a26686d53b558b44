#!/usr/bin/env python3
"""PyTorch reference for bench/webgpu.ts: ResNet-50 (torchvision's, or the same network defined here when
torchvision is missing) at 224x224 (--image-size) on one CUDA GPU, float32, images/s of
  forward  eval mode, no autograd, logits synchronised
  train    forward + cross-entropy + backward + SGD(momentum=0.9) step, BatchNorm in training mode
in two settings: `fp32` (TF32 off for matmul and cuDNN: the arithmetic wolfpack's webgpu kernels do) and
`default` (PyTorch's defaults: cuDNN convolutions may use TF32 tensor cores). cudnn.benchmark is on; inputs
are already on the GPU; warm-up iterations are not timed. Prints one JSON line.
  usage: torch_resnet50.py [--batch 32] [--image-size 224] [--iters 30] [--warmup 10] [--classes 1000]
"""
import argparse
import json
import sys
import time


def resnet50(classes):
    try:
        import torchvision
        return torchvision.models.resnet50(num_classes=classes), 'torchvision ' + torchvision.__version__
    except ImportError:
        pass
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride, down):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)) if down else None

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (self.down(x) if self.down is not None else x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for b in range(blocks):
            stride = 2 if (b == 0 and i > 0) else 1
            layers.append(Bottleneck(cin, planes, stride, b == 0))
            cin = planes * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, classes)]
    return nn.Sequential(*layers), 'inline ResNet-50 v1.5 (torchvision not installed)'


def measure(torch, model, x, y, args, train):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        if train:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)

    model.train(train)
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {'img_s': args.batch / med, 'median_s': med, 'min_s': times[0]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--classes', type=int, default=1000)
    p.add_argument('--image-size', type=int, default=224)
    args = p.parse_args()
    out = {'bench': 'torch_resnet50_cuda', 'batch': args.batch, 'image_size': args.image_size, 'classes': args.classes}
    try:
        import torch
    except ImportError as e:
        out['error'] = f'torch is not installed: {e}'
        print(json.dumps(out))
        return 0
    out['torch'] = torch.__version__
    if not torch.cuda.is_available():
        out['error'] = 'CUDA is not available to torch'
        print(json.dumps(out))
        return 0
    dev = torch.device('cuda')
    out['device'] = torch.cuda.get_device_name(0)
    out['cuda'] = torch.version.cuda
    out['cudnn'] = torch.backends.cudnn.version()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model, source = resnet50(args.classes)
    out['model'] = source
    model = model.to(dev)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    default_matmul, default_cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for name, tf32 in (('fp32', False), ('default', None)):
        torch.backends.cuda.matmul.allow_tf32 = default_matmul if tf32 is None else tf32
        torch.backends.cudnn.allow_tf32 = default_cudnn if tf32 is None else tf32
        r = {'allow_tf32_matmul': torch.backends.cuda.matmul.allow_tf32, 'allow_tf32_cudnn': torch.backends.cudnn.allow_tf32}
        r['forward'] = measure(torch, model, x, y, args, train=False)
        r['train'] = measure(torch, model, x, y, args, train=True)
        out[name] = r
        print(f'torch {name}: forward {r["forward"]["img_s"]:.0f} img/s, train {r["train"]["img_s"]:.0f} img/s', file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
