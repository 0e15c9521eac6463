"""An independent numpy ResNet: torchvision's published definition, not our Keras code.

Written from torchvision/models/resnet.py (``ResNet``, ``BasicBlock``,
``Bottleneck``, ``_make_layer``) and its ImageNet transforms: NCHW float64,
eval-mode BatchNorm with eps 1e-5, the stride of a bottleneck on its 3x3 conv
("v1.5"), a 1x1 conv + BN downsample where the stride or the width changes.
It shares nothing with resnet_tl, so a mapping error there cannot hide here.
"""

from __future__ import annotations

import numpy as np

ARCHS = {  # name: (block, layers) as torchvision's resnet18() ... resnet152() pass them
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
EPS = 1e-5


# ------------------------------------------------------- state dict (timm/torchvision keys)
def make_state_dict(arch: str, num_classes: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under torchvision's key names, as ``model.state_dict()`` lists them.

    Convs: Kaiming normal (fan_out), as torchvision initialises them; BatchNorm:
    random gamma/beta/statistics so that every field matters in the check.
    """
    block, layers = ARCHS[arch]
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def conv(name, out_c, in_c, k):
        std = np.sqrt(2.0 / (out_c * k * k))
        sd[f"{name}.weight"] = rng.normal(0, std, (out_c, in_c, k, k)).astype(np.float32)

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)

    expansion = 4 if block == "bottleneck" else 1
    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        stride = 1 if i == 0 else 2
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            if block == "bottleneck":
                conv(f"{p}.conv1", planes, inplanes, 1); bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3); bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", planes * 4, planes, 1); bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1", planes, inplanes, 3); bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3); bn(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0", planes * expansion, inplanes, 1); bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    bound = 1 / np.sqrt(inplanes)  # nn.Linear's default init
    sd["fc.weight"] = rng.uniform(-bound, bound, (num_classes, inplanes)).astype(np.float32)
    sd["fc.bias"] = rng.uniform(-bound, bound, num_classes).astype(np.float32)
    return sd


# ------------------------------------------------------------------ forward pass
def conv2d(x, w, stride=1, padding=0):
    """x (N, C, H, W), w (O, C, kh, kw) -> (N, O, H', W'); zero padding, as nn.Conv2d."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def batchnorm(x, sd, name):
    scale = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"].astype(np.float64) + EPS)
    shift = sd[f"{name}.bias"] - sd[f"{name}.running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


def maxpool3x3s2p1(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return win.max(axis=(-2, -1))


def forward(sd: dict[str, np.ndarray], pixels: np.ndarray, arch: str) -> np.ndarray:
    """Logits (N, classes) of RGB pixels 0..255 (N, H, W, 3), after torchvision's Normalize."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    block, layers = ARCHS[arch]
    x = (pixels.astype(np.float64) / 255.0 - MEAN) / STD
    x = x.transpose(0, 3, 1, 2)
    x = relu(batchnorm(conv2d(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
    x = maxpool3x3s2p1(x)
    for i, blocks in enumerate(layers):
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            stride = 2 if i > 0 and b == 0 else 1
            identity = x
            if block == "bottleneck":
                out = relu(batchnorm(conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                out = relu(batchnorm(conv2d(out, sd[f"{p}.conv2.weight"], stride, 1), sd, f"{p}.bn2"))
                out = batchnorm(conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                out = relu(batchnorm(conv2d(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1"))
                out = batchnorm(conv2d(out, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                identity = batchnorm(conv2d(x, sd[f"{p}.downsample.0.weight"], stride), sd, f"{p}.downsample.1")
            x = relu(out + identity)
    pooled = x.mean(axis=(2, 3))
    return pooled @ sd["fc.weight"].T + sd["fc.bias"]
