"""The U-Net-like encoder-decoder with a memory module between them (paper, Sec. 3.1, Fig. 2).

Prediction variant: the past T frames, stacked on channels, -> frame T+1 (skip connections
from the first three encoder stages). Reconstruction variant: one frame -> itself (no skips).
`ModelConfig.skips` can drop the deepest skips (a departure from the paper; docs/experiments.md, "Fewer skip
connections"): what they carried must then come through the memory read. `ModelConfig.background` (another
departure) subtracts the camera's empty scene from the input, so the queries see what is in the
scene rather than the place itself, and the decoder predicts the change from that scene.
Pixels are in [-1, 1] on both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from model import memory

Variant = Literal["prediction", "reconstruction"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape; stored in every checkpoint."""

    variant: Variant = "prediction"
    base_width: int = 64  # channels of the first stage; the query has 8x as many
    height: int = 256  # input size; divisible by 8
    width: int = 256
    channels: int = 1  # colour channels per frame: 1 (grey) or 3 (BGR)
    memory_size: int = 10  # M
    past_frames: int = 4  # T, prediction variant only
    # encoder stages whose features skip to the decoder, shallowest first (0-3); None: the paper's,
    # 3 for prediction and 0 for reconstruction (checkpoints from before this field load as None)
    skips: int | None = None
    # subtract the camera's empty scene (a buffer `train` fills with the median training frame) from every
    # input frame, and predict the next frame as a change from it (checkpoints from before: False)
    background: bool = False
    # k: the past frames are k frames apart and the target k after the last (t-4k .. t-k -> t); 1 is the paper's.
    # A larger step makes wrong speed cost more error relative to walking (checkpoints from before: 1)
    frame_step: int = 1

    def __post_init__(self) -> None:
        if self.skips is None:
            object.__setattr__(self, "skips", 3 if self.variant == "prediction" else 0)
        if self.variant not in ("prediction", "reconstruction"):
            raise ValueError(f"variant must be prediction or reconstruction, not {self.variant!r}")
        if self.height % 8 or self.width % 8 or self.height < 8 or self.width < 8:
            raise ValueError(f"input size {self.height}x{self.width} must be positive multiples of 8")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if not 0 <= self.skips <= 3:
            raise ValueError(f"skips must be 0 to 3, not {self.skips}")
        if self.variant == "reconstruction" and self.skips:
            raise ValueError("the reconstruction variant takes no skips: they would hand the decoder its own target")
        if self.frame_step < 1 or (self.variant == "reconstruction" and self.frame_step != 1):
            raise ValueError(f"frame_step must be 1 or more (1 for reconstruction), not {self.frame_step}")
        if not 1 <= self.base_width <= 512 or self.memory_size < 2 or self.past_frames < 1:
            raise ValueError(f"invalid config {self}")

    @property
    def feature_dim(self) -> int:
        """C, the channels of a query and of a memory item."""
        return 8 * self.base_width

    @property
    def input_frames(self) -> int:
        """Frames the network sees per sample."""
        return self.past_frames if self.variant == "prediction" else 1

    @property
    def window(self) -> int:
        """Frames per scored sample: the inputs plus the target frame (prediction), `frame_step` apart."""
        return self.past_frames * self.frame_step + 1 if self.variant == "prediction" else 1

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    """conv-BN-ReLU twice; the encoder's last block stops after its second conv."""
    layers = _conv_bn_relu(cin, cout) + _conv_bn_relu(cout, cout)
    return nn.Sequential(*(layers[:4] if last else layers))


def _upsample(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    def __init__(self, in_channels: int, w: int) -> None:
        super().__init__()
        self.stage1 = _block(in_channels, w)
        self.stage2 = _block(w, 2 * w)
        self.stage3 = _block(2 * w, 4 * w)
        self.stage4 = _block(4 * w, 8 * w, last=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        s1 = self.stage1(x)  # (B, w, H, W)
        s2 = self.stage2(self.pool(s1))  # (B, 2w, H/2, W/2)
        s3 = self.stage3(self.pool(s2))  # (B, 4w, H/4, W/4)
        features = self.stage4(self.pool(s3))  # (B, 8w, H/8, W/8)
        return features, [s1, s2, s3]


class Decoder(nn.Module):
    """Upsamples the memory-augmented features back to a frame, concatenating the encoder features
    of the `skips` shallowest stages on the way (3: all, the paper's prediction variant)."""

    def __init__(self, out_channels: int, w: int, skips: int) -> None:
        super().__init__()
        self.skips = skips

        def k(stage: int) -> int:  # channel multiplier: 2 where that stage's skip is concatenated
            return 2 if stage <= skips else 1

        self.bottleneck = _block(16 * w, 8 * w)  # query + read memory: 2C -> C
        self.up3 = _upsample(8 * w, 4 * w)
        self.stage3 = _block(k(3) * 4 * w, 4 * w)
        self.up2 = _upsample(4 * w, 2 * w)
        self.stage2 = _block(k(2) * 2 * w, 2 * w)
        self.up1 = _upsample(2 * w, w)
        self.head = nn.Sequential(
            *_conv_bn_relu(k(1) * w, w), *_conv_bn_relu(w, w), nn.Conv2d(w, out_channels, 3, padding=1), nn.Tanh()
        )

    def _join(self, stage: int, skips: list[Tensor], x: Tensor) -> Tensor:
        return torch.cat([skips[stage - 1], x], dim=1) if stage <= self.skips else x

    def forward(self, z: Tensor, skips: list[Tensor]) -> Tensor:
        x = self.bottleneck(z)  # (B, 2C, h, w) -> (B, C, h, w)
        x = self.stage3(self._join(3, skips, self.up3(x)))  # (B, 4w, H/4, W/4)
        x = self.stage2(self._join(2, skips, self.up2(x)))  # (B, 2w, H/2, W/2)
        return self.head(self._join(1, skips, self.up1(x)))  # (B, ch, H, W)


def scene_residual(x: Tensor, scene: Tensor | None) -> Tensor:
    """(B, T*ch, H, W) frames minus the empty scene (ch, H, W) from each of the T frames (broadcast: no copy
    of the scene per frame)."""
    return x if scene is None else (x.unflatten(1, (-1, scene.shape[0])) - scene).flatten(1, 2)


def scene_frame(decoded: Tensor, scene: Tensor | None) -> Tensor:
    """The decoder's (B, ch, H, W) output in [-1, 1] -> the frame: with a scene, twice the output is the
    change from it (a change spans [-2, 2]), clipped to the pixel range."""
    return decoded if scene is None else (scene + 2 * decoded).clamp(-1, 1)


class Output(NamedTuple):
    frame: Tensor  # (B, ch, H, W) predicted / reconstructed frame in [-1, 1]
    queries: Tensor  # (B, N, C) unit-norm queries, N = H/8 * W/8


class MemoryAE(nn.Module):
    """Encoder -> memory read -> decoder. The memory items live in a buffer, saved with the weights."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c.channels * c.input_frames, c.base_width)
        self.decoder = Decoder(c.channels, c.base_width, c.skips)
        self.register_buffer("items", memory.init_items(c.memory_size, c.feature_dim))
        self.background: Tensor | None  # (ch, H, W) in [-1, 1]; None (not in the state dict) without one
        self.register_buffer("background", torch.zeros(c.channels, c.height, c.width) if c.background else None)

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, T*ch, H, W) frames -> features (B, C, h, w) and the skip features."""
        return self.encoder(scene_residual(x, self.background))

    def decode(self, z: Tensor, skips: list[Tensor]) -> Tensor:
        """(B, 2C, h, w) query and memory read -> the frame (B, ch, H, W) in [-1, 1]."""
        return scene_frame(self.decoder(z, skips), self.background)

    def forward(self, x: Tensor, items: Tensor | None = None) -> Output:
        """x: (B, T*ch, H, W); items: (M, C) shared or (B, M, C) per sample (default: own items)."""
        features, skips = self.encode(x)  # (B, C, h, w)
        h, w = features.shape[-2:]
        queries = memory.flatten_queries(features)  # (B, N, C)
        z = memory.read(queries, self.items if items is None else items)  # (B, N, 2C)
        return Output(self.decode(memory.unflatten_queries(z, h, w), skips), queries)
