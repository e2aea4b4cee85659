"""Inference paths: the network forward (encoder -> memory read -> decoder) on one of several backends.

One setting picks the path (`evaluate --inference`, the service's MNAD_INFERENCE):

- ``fp32``: eager PyTorch, float32: the reference every other path is tested against.
- ``bf16``: PyTorch, channels_last, BatchNorm folded into the convolutions, convolutions in
  bfloat16 (CPUs with AVX512-BF16 or AMX; CUDA); on CPU traced, frozen and fused by oneDNN Graph.
  ``fp16`` is the same in float16, CUDA only.
- ``compile``: the bf16 (or fp32, where bf16 is missing) module through torch.compile (inductor,
  frozen weights); on CUDA it also captures CUDA graphs (mode reduce-overhead).
- ``openvino`` / ``onnxruntime``: the fp32 graph exported once at load and run by OpenVINO (bf16
  precision hint where the CPU has it) or by ONNX Runtime (fp32). Optional packages: the
  ``fast`` extra.
- ``auto``: the first path of `AUTO_ORDER` that is available here and verified against fp32.

Every path keeps the memory read (softmax over M items, per-sample copies (B, M, C)) in float32
and returns float32 frames and queries, so PSNR, feature distance and the test-time update run
in float32 whatever the backend. A path that is missing or fails to build or to verify falls back
to fp32 with a logged warning, recorded in `InferencePath.fallback`, so a service never fails to
start over an optional speed-up.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model import memory
from model.device import bf16_supported
from model.network import MemoryAE, ModelConfig, Output, scene_frame, scene_residual

log = logging.getLogger(__name__)

Inference = Literal["auto", "fp32", "bf16", "fp16", "compile", "onnxruntime", "openvino"]
INFERENCE_CHOICES: tuple[str, ...] = get_args(Inference)

# What `auto` tries, best first (bench/, docs/benchmarks.md). On this project's CPU bf16 eager is as fast as
# compile inside the engine without its ~10 s start-up and C++ compiler, and needs no optional package.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("bf16", "fp32"),
    "cuda": ("fp16", "fp32"),
}

# A path verifies when, on a fixed input, its frame and queries stay this close to fp32 (max abs).
# Pixels and query components lie in [-1, 1]; bf16 keeps ~3 significant digits, so a correct bf16
# path stays below ~1e-2 while a broken one (wrong layout, wrong weights) is off by ~1.
VERIFY_TOLERANCE = 0.05


class BackendUnavailable(RuntimeError):
    """The backend cannot run here: package missing, wrong device, or no bf16 on this CPU."""


def _fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the (transposed) convolution before it: one pass less per layer."""
    for child in module.children():
        if isinstance(child, nn.Sequential):
            layers = list(child)
            for i in range(1, len(layers)):
                conv, bn = layers[i - 1], layers[i]
                if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
                    child[i - 1] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                    child[i] = nn.Identity()
        _fold_batchnorm(child)
    return module


class MixedForward(nn.Module):
    """The network with convolutions in `dtype` (channels_last, BN folded) and the memory read in float32.

    Weights are cast once here, not per call as autocast would, and the only casts per frame are
    the input, the features (to form float32 queries) and the read-out (back to `dtype`).
    """

    def __init__(self, net: MemoryAE, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        layout = {"dtype": dtype, "memory_format": torch.channels_last}
        with torch.inference_mode(False), torch.no_grad():
            self.encoder = _fold_batchnorm(copy.deepcopy(net.encoder)).to(**layout)
            self.decoder = _fold_batchnorm(copy.deepcopy(net.decoder)).to(**layout)
        self.register_buffer("background", net.background)  # float32: subtracted before the cast
        self.eval()

    def forward(self, x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        x = scene_residual(x, self.background).to(dtype=self.dtype, memory_format=torch.channels_last)
        features, skips = self.encoder(x)
        h, w = features.shape[-2:]
        queries = memory.flatten_queries(features.float())  # (B, N, C) float32
        z = memory.read(queries, items)  # float32
        frame = self.decoder(memory.unflatten_queries(z, h, w).to(self.dtype), skips)
        return scene_frame(frame.float(), self.background), queries


class _Graph(nn.Module):
    """MemoryAE.forward as plain tensors in and out, for graph export (items are an input)."""

    def __init__(self, net: MemoryAE) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x, items)
        return out.frame, out.queries


def _example(
    config: ModelConfig, batch: int, device: torch.device, seed: int = 0, scene: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """A fixed input that looks like footage: (B, T*ch, H, W) in [-1, 1] and (B, M, C) random items.

    A smooth scene (a coarse random grid, upsampled; or the network's own empty scene, `scene` (ch, H, W),
    when it has one) with a few blobs moving a few pixels per frame and faint sensor noise: what a camera
    gives, so the check measures how a path rounds on real frames. Independent noise in every pixel and
    frame is no camera's footage; its activations run far above real ones, and a bf16 path that matches
    fp32 to 0.01 on held-out frames strayed 0.19 on it. A network that subtracts its scene sees a random
    one as one huge change: 0.15 there against 0.014 on held-out frames.
    """
    g = torch.Generator().manual_seed(seed)
    frames, ch, h, w = config.input_frames, config.channels, config.height, config.width
    coarse = torch.rand(batch, ch, max(2, h // 16), max(2, w // 16), generator=g) * 1.6 - 0.8  # drawn either way:
    if scene is None:  # the blobs and noise below stay the same whichever scene they move over
        scene = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)  # (B, ch, H, W)
    else:
        scene = scene.detach().float().cpu().expand(batch, ch, h, w)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    start = torch.rand(batch, 3, 2, generator=g) * torch.tensor([h, w])  # 3 blobs per sample, (y, x)
    velocity = (torch.rand(batch, 3, 2, generator=g) * 2 - 1) * 3  # pixels per frame
    sign = torch.where(torch.rand(batch, 3, generator=g) < 0.5, -0.6, 0.6)
    sigma = max(h, w) / 24
    stack = []
    for t in range(frames):
        at = start + t * velocity  # (B, 3, 2)
        d2 = (yy - at[..., 0, None, None]).square() + (xx - at[..., 1, None, None]).square()  # (B, 3, H, W)
        blobs = (sign[..., None, None] * torch.exp(-d2 / (2 * sigma**2))).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        stack.append(scene + blobs + 0.02 * torch.randn(batch, ch, h, w, generator=g))
    x = torch.cat(stack, dim=1).clamp_(-1, 1)  # (B, T*ch, H, W)
    items = memory.init_items(config.memory_size, config.feature_dim, g).expand(batch, -1, -1).contiguous()
    return x.to(device), items.to(device)


@dataclass
class InferencePath:
    """A callable forward with the network's interface: (x, items (B, M, C)) -> Output, float32 out."""

    name: str  # the path that runs
    requested: str  # the path that was asked for
    net: MemoryAE  # the fp32 eager network: config, memory items, reference
    run: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    detail: str = ""  # precision / provider
    fallback: str | None = None  # why `requested` is not what runs

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def items(self) -> Tensor:
        return self.net.items

    def __call__(self, x: Tensor, items: Tensor) -> Output:
        frame, queries = self.run(x, items)
        return Output(frame, queries)

    def describe(self) -> dict:
        return {"path": self.name, "requested": self.requested, "detail": self.detail, "fallback": self.fallback}


def _build_fp32(net: MemoryAE, device: torch.device) -> tuple[Callable, str]:
    def run(x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        out = net(x, items)
        return out.frame, out.queries

    return run, "float32 eager"


def _build_mixed(net: MemoryAE, device: torch.device, dtype: torch.dtype) -> tuple[Callable, str]:
    if dtype == torch.bfloat16 and not bf16_supported(device):
        raise BackendUnavailable(f"no native bfloat16 on {device} (needs AVX512-BF16/AMX or CUDA)")
    if dtype == torch.float16 and device.type != "cuda":
        raise BackendUnavailable("fp16 runs on CUDA only (CPU convolutions in fp16 are slow)")
    module = MixedForward(net, dtype).to(device)
    detail = f"{str(dtype).removeprefix('torch.')} convs, channels_last, fp32 memory read"
    if device.type == "cpu":
        for fuse in (True, False):
            try:
                frozen = _freeze(module, net.config, device, fuse)
                return frozen, detail + ", TorchScript-frozen" + (", oneDNN Graph fusion" if fuse else "")
            except Exception as e:  # tracing is an optimization: the eager module computes the same
                log.warning("could not freeze the %s forward (oneDNN Graph fusion %s): %s", dtype, fuse, e)
    return module, detail


def _freeze(module: nn.Module, config: ModelConfig, device: torch.device, fuse: bool) -> Callable:
    """TorchScript trace + freeze: weights become constants prepacked for oneDNN and no Python runs per
    layer, ~10-15 % faster at batch 1 on CPU (bench/model_speed.py). With `fuse`, oneDNN Graph (LLGA)
    also fuses convolutions with their ReLU and the decoder's concatenations: another ~10 % at batch 1-2.

    That switch is TorchScript's and process-wide; it is read when a graph is optimized for a new input
    shape (its second call at that shape), so it is left as set here. The first two shapes a graph sees
    get static fusions (TorchScript's default fusion strategy), later ones a dynamic or unfused fallback
    about as fast as the plain frozen graph: so it is checked at batch 1 (a single stream) and 2 first,
    then at 3 (the fallback). Traced at batch 2, three calls per check (profiled, then optimized) against
    the eager module, so a graph that baked in its batch size or fused wrongly is never used."""
    torch.jit.enable_onednn_fusion(fuse)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes read as Python ints (H, W are fixed)
        frozen = torch.jit.freeze(torch.jit.trace(module.eval(), _example(config, 2, device), check_trace=False))
    with torch.inference_mode():
        for batch in (1, 2, 3):
            x, items = _example(config, batch, device, seed=batch)
            want = module(x, items)
            for _ in range(3):
                for w, got in zip(want, frozen(x, items)):
                    # fused kernels round bf16 in another order: ~4e-3 (one bf16 step near 1) apart is correct
                    if w.shape != got.shape or not torch.allclose(w, got, atol=VERIFY_TOLERANCE / 5, rtol=0):
                        raise BackendUnavailable(f"the frozen graph differs from the eager module at batch {batch}")
    return OptimizedOnly(frozen)


class OptimizedOnly:
    """A TorchScript graph whose every result comes from its optimized form.

    The profiling executor runs a graph unoptimized on its first call at each new input shape, with
    unfused kernels that round bf16 one step differently (up to 4e-3 in a pixel, 2e-3 in a streaming
    score). Scores must not depend on whether a batch size was seen before (a stream's first frame,
    evaluate's first batch), so the first call at each input layout is made twice; only the second counts."""

    def __init__(self, graph: Callable) -> None:
        self.graph = graph
        self._layouts: set[tuple] = set()

    def __call__(self, x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        # The graph's guards check strides too (a window slice is not a dense batch): key on both, copy nothing.
        layout = (x.shape, x.stride(), items.shape, items.stride())
        if layout not in self._layouts:
            self.graph(x, items)  # the profiling run
            self._layouts.add(layout)
        return self.graph(x, items)


def _build_compile(net: MemoryAE, device: torch.device) -> tuple[Callable, str]:
    """Compiles three graphs up front (batch 1, batch 2, then one with a symbolic batch that every other
    size reuses: dynamo's automatic dynamic shapes), so no batch size ever stalls a live stream to compile."""
    import torch._inductor  # fails where inductor is missing

    dtype = torch.bfloat16 if bf16_supported(device) else torch.float32
    if device.type == "cuda":
        dtype = torch.float16
    module = MixedForward(net, dtype).to(device)
    # CUDA graphs on GPU: what mode="reduce-overhead" turns on, but torch.compile takes mode or options, not both
    options = {"freezing": True, **({"triton.cudagraphs": True} if device.type == "cuda" else {})}
    compiled = torch.compile(module, dynamic=None, options=options)
    cuda = device.type == "cuda"

    def run(x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        # Dynamo guards on strides and on inference-tensor-ness: hand it fresh, dense inference tensors
        # always, or every caller's layout (a window slice, a stacked batch) compiles a graph of its own.
        with torch.inference_mode():
            x = x.to(dtype=dtype, memory_format=torch.channels_last, copy=True)
            frame, queries = compiled(x, items.clone(memory_format=torch.contiguous_format))
        return (frame.clone(), queries.clone()) if cuda else (frame, queries)  # CUDA graphs reuse outputs

    for batch in (1, 2, 3):
        run(*_example(net.config, batch, device))
    return run, f"torch.compile inductor, {str(dtype).removeprefix('torch.')}"


def _cpu_packages(device: torch.device, backend: str, *modules: str) -> list[ModuleType]:
    """The optional packages a CPU-only backend needs, or BackendUnavailable saying what is missing."""
    if device.type != "cpu":
        raise BackendUnavailable(f"the {backend} path runs on CPU only")
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as e:
        raise BackendUnavailable(f"{'/'.join(modules)} not installed (pip install 'mnad-service[fast]')") from e


def _build_openvino(net: MemoryAE, device: torch.device) -> tuple[Callable, str]:
    (ov,) = _cpu_packages(device, "openvino", "openvino")
    c = net.config
    with torch.inference_mode(False), torch.no_grad():
        graph = ov.convert_model(_Graph(copy.deepcopy(net).cpu()), example_input=_example(c, 2, device))
    graph.reshape({0: [-1, c.input_frames * c.channels, c.height, c.width], 1: [-1, c.memory_size, c.feature_dim]})
    precision = "bf16" if bf16_supported(device) else "f32"
    compiled = ov.Core().compile_model(
        graph,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()

    def run(x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        out = request.infer([np.ascontiguousarray(x.numpy()), np.ascontiguousarray(items.numpy())], share_inputs=True)
        return torch.from_numpy(out[0]), torch.from_numpy(out[1])  # copies (share_outputs=False)

    return run, f"OpenVINO {ov.get_version().split('-')[0]}, {precision}"


def _build_onnxruntime(net: MemoryAE, device: torch.device) -> tuple[Callable, str]:
    ort, _ = _cpu_packages(device, "onnxruntime", "onnxruntime", "onnxscript")  # torch's ONNX exporter needs onnxscript
    c = net.config
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = contextlib.redirect_stdout(io.StringIO())  # the exporter prints its progress
    with torch.inference_mode(False), torch.no_grad(), quiet, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Graph(copy.deepcopy(net).cpu()),
            _example(c, 2, device),
            input_names=["x", "items"],
            output_names=["frame", "queries"],
            dynamic_shapes={"x": {0: batch}, "items": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        frame, queries = session.run(
            None, {"x": np.ascontiguousarray(x.numpy()), "items": np.ascontiguousarray(items.numpy())}
        )
        return torch.from_numpy(frame), torch.from_numpy(queries)

    return run, f"ONNX Runtime {ort.__version__}, fp32"


BUILDERS: dict[str, Callable[[MemoryAE, torch.device], tuple[Callable, str]]] = {
    "fp32": _build_fp32,
    "bf16": lambda net, device: _build_mixed(net, device, torch.bfloat16),
    "fp16": lambda net, device: _build_mixed(net, device, torch.float16),
    "compile": _build_compile,
    "openvino": _build_openvino,
    "onnxruntime": _build_onnxruntime,
}


def max_difference(path: InferencePath, batch: int = 2) -> float:
    """Largest |frame or query difference| from the fp32 eager net on a fixed input."""
    device = path.items.device
    x, items = _example(path.config, batch, device, scene=path.net.background)
    with torch.inference_mode():
        ref = path.net(x, items)
        out = path(x, items)
    frame = (out.frame.float() - ref.frame).abs().max().item()
    return max(frame, (out.queries.float() - ref.queries).abs().max().item())


def fast_path_difference(net: MemoryAE, device: torch.device) -> tuple[str, float] | None:
    """The path `auto` tries first on this device and how far these weights stray from fp32 on it.

    None where that path cannot be built here (no bf16 on this CPU, say). `train` ranks an epoch that
    strays more than `VERIFY_TOLERANCE` below every one that does not: the service would serve it in fp32.
    """
    name = AUTO_ORDER.get(device.type, ("fp32",))[0]
    if name == "fp32":
        return None
    try:
        run, detail = BUILDERS[name](net, device)
    except Exception:  # cannot run here at all: nothing to hold against these weights
        return None
    return name, max_difference(InferencePath(name, name, net, run, detail))


def build(name: str, net: MemoryAE, device: torch.device | str | None = None) -> InferencePath:
    """Build the named path for `net` (eval mode, already on its device); any failure falls back to fp32.

    The built path is run once on a fixed input and compared against fp32 (`VERIFY_TOLERANCE`):
    that both warms it up (graph compilation happens here, not on the first camera frame) and
    keeps a backend that computes something else from ever serving.
    """
    if name not in INFERENCE_CHOICES:
        raise ValueError(f"inference path must be one of {', '.join(INFERENCE_CHOICES)}, not {name!r}")
    device = torch.device(device) if device is not None else net.items.device
    candidates = AUTO_ORDER.get(device.type, ("fp32",)) if name == "auto" else (name,)
    reasons: list[str] = []
    for candidate in candidates:
        if candidate == "fp32":
            break
        try:
            run, detail = BUILDERS[candidate](net, device)
            path = InferencePath(candidate, name, net, run, detail)
            diff = max_difference(path)
            if not diff <= VERIFY_TOLERANCE:
                raise BackendUnavailable(f"output differs from fp32 by {diff:.3g} > {VERIFY_TOLERANCE}")
        except Exception as e:  # a missing package, a compiler error, a wrong result: never fatal
            reasons.append(f"{candidate}: {e}")
            log.warning("inference path %s unavailable: %s", candidate, e)
            continue
        path.fallback = "; ".join(reasons) or None
        log.info("inference path %s (%s)", candidate, detail)
        return path
    run, detail = _build_fp32(net, device)
    if reasons:
        log.warning("inference falls back to fp32 eager (%s requested)", name)
    return InferencePath("fp32", name, net, run, detail, "; ".join(reasons) or None)
