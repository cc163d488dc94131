"""Model complexity: parameters, FLOPs / MACs, peak memory and latency.

Conventions (stated because the papers rarely do):

- FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix
  products only (convolutions, linear / mm / bmm / addmm / baddbmm, attention) and counts a
  multiply-add as **2** FLOPs. ``macs`` = FLOPs / 2 is the multiply-accumulate count that most
  segmentation papers (and tools such as mmcv's ``get_flops`` / thop) print as "GFLOPs".
  Element-wise work (BN, ReLU, pooling, interpolation, softmax) is not counted.
- Peak memory on CUDA is the caching allocator's ``max_memory_allocated`` above what was
  allocated before the call. On other devices it is the peak total size of the tensor storages
  created during the call and alive at the same time, tracked op by op with a
  ``TorchDispatchMode`` (activations kept for backward, temporaries, gradients, the input batch);
  it excludes parameters, kernel-internal scratch buffers and allocator overhead, and gives the
  same figure on the ``meta`` device, where nothing is computed.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from gsbench.errors import GsbenchError


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _module_device(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise GsbenchError(f"input shape must be N x C x H x W with positive sizes, got {shape}")
    return shape


def _set_mode(module: nn.Module, backward: bool, batch: int) -> None:
    """Eval mode for forward timing; train mode for forward+backward.

    Training-mode BatchNorm is undefined on one image pooled to 1x1 (PSPNet / ASPP image
    pooling), so with a batch of 1 the BatchNorm layers keep their running statistics there.
    """
    module.train(backward)
    if backward and batch == 1:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _outputs_sum(outputs) -> torch.Tensor:
    """A scalar that depends on every output tensor, to drive a backward pass."""
    return sum(t.float().mean() for t in tree_leaves(outputs) if isinstance(t, torch.Tensor))


@dataclass(frozen=True)
class FlopCount:
    """``flops``: multiply-add = 2 (FlopCounterMode); ``macs``: multiply-adds (flops / 2)."""

    flops: int
    macs: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> FlopCount:
    """FLOPs and MACs of one inference forward (eval mode, no grad) on a random input.

    The input is created on the module's device; build the module under
    ``with torch.device("meta")`` to count a large model at no compute cost.
    """
    shape = _check_shape(input_shape)
    was_training = module.training
    module.eval()
    try:
        images = torch.randn(shape, device=_module_device(module))
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(images)
    finally:
        module.train(was_training)
    flops = int(counter.get_total_flops())
    return FlopCount(flops=flops, macs=flops // 2)


class _LiveStorageTracker(TorchDispatchMode):
    """Track the total size of the tensor storages that ops create and that are still alive."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def _release_dead(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current -= self._live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._release_dead()
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref.cdata not in self._live:
                    self._live[ref.cdata] = (ref, storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class PeakMemory:
    bytes: int
    method: str

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def measure_peak_memory(module: nn.Module, input_shape: tuple[int, ...],
                        backward: bool = False) -> PeakMemory:
    """Peak memory of one forward (eval, no grad) or forward+backward (train mode) call.

    With a batch of 1 the backward pass keeps BatchNorm in eval mode (see ``_set_mode``).

    See the module docstring for what is measured on CUDA and on other devices.
    """
    shape = _check_shape(input_shape)
    device = _module_device(module)
    was_training = module.training
    _set_mode(module, backward, shape[0])
    module.zero_grad(set_to_none=True)
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            baseline = torch.cuda.memory_allocated(device)
            _run_once(module, shape, device, backward)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - baseline
            method = "cuda max_memory_allocated above the resident parameters"
        else:
            with _LiveStorageTracker() as tracker:
                _run_once(module, shape, device, backward)
            peak = tracker.peak
            method = "peak live tensor storage (dispatch-level), parameters excluded"
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return PeakMemory(bytes=int(peak), method=method)


def _run_once(module: nn.Module, shape: tuple[int, ...], device: torch.device,
              backward: bool) -> None:
    images = torch.randn(shape, device=device)
    if backward:
        _outputs_sum(module(images)).backward()
    else:
        with torch.no_grad():
            module(images)


@dataclass(frozen=True)
class Latency:
    """Wall-clock milliseconds per call: the median and every timed repetition."""

    median_ms: float
    times_ms: tuple[float, ...]


def measure_latency(module: nn.Module, input_shape: tuple[int, ...], backward: bool = False,
                    warmup: int = 2, repeat: int = 5,
                    on_call: Callable[[], None] | None = None) -> Latency:
    """Median latency of a forward (eval, no grad) or a forward+backward (train mode) call.

    ``warmup`` untimed calls first (allocator and kernel autotuning); CUDA work is synchronised
    before each clock read. The module stays on its device; the input is made there. With a
    batch of 1 the backward pass keeps BatchNorm in eval mode (see ``_set_mode``).
    ``on_call()`` is called after each call (a progress display).
    """
    shape = _check_shape(input_shape)
    if repeat < 1 or warmup < 0:
        raise GsbenchError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, "
                           f"warmup={warmup}")
    device = _module_device(module)
    if device.type == "meta":
        raise GsbenchError("cannot time a model on the meta device; build it on cpu or cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    images = torch.randn(shape, device=device)
    was_training = module.training
    _set_mode(module, backward, shape[0])
    times = []
    try:
        for i in range(warmup + repeat):
            module.zero_grad(set_to_none=True)
            sync()
            start = time.perf_counter()
            if backward:
                _outputs_sum(module(images)).backward()
            else:
                with torch.no_grad():
                    module(images)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
            if on_call is not None:
                on_call()
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return Latency(median_ms=statistics.median(times), times_ms=tuple(times))


def profile_model(module: nn.Module, input_shape: tuple[int, ...], latency: bool = True,
                  warmup: int = 2, repeat: int = 5,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Every complexity figure of ``module`` as a flat, JSON-ready dict.

    FLOPs and (off CUDA) peak memory are measured on a ``meta`` copy when the module lives on
    the CPU, so they cost no compute (on the CPU itself for modules that cannot run on meta
    tensors); latency runs on the module's own device. ``on_progress(done, total)`` hears each
    step: the counts, then every timed or warm-up call.
    """
    total = 1 + (2 * (warmup + repeat) if latency else 0)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    shape = _check_shape(input_shape)
    device = _module_device(module)
    try:
        analysed = _meta_copy(module) if device.type == "cpu" else module
        _check_input_channels(analysed, shape)
        flops, memory_forward, memory_train = _static_figures(analysed, shape)
    except (NotImplementedError, RuntimeError):
        # A module that reads tensor data in forward (e.g. a size kept in a buffer) cannot
        # run on meta tensors: measure on the real device instead (a genuine error in the
        # module raises again there).
        flops, memory_forward, memory_train = _static_figures(module, shape)
    report = {
        "input_shape": list(shape),
        "device": str(device),
        "params": count_parameters(module),
        "params_m": count_parameters(module) / 1e6,
        "gflops": flops.gflops,
        "gmacs": flops.gmacs,
        "flops_convention": "gflops counts a multiply-add as 2 FLOPs; gmacs = gflops / 2",
        "peak_memory_forward_mib": memory_forward.mib,
        "peak_memory_train_mib": memory_train.mib,
        "memory_method": memory_forward.method,
    }
    step()
    if latency:
        forward = measure_latency(module, shape, backward=False, warmup=warmup, repeat=repeat,
                                  on_call=step)
        train = measure_latency(module, shape, backward=True, warmup=warmup, repeat=repeat,
                                on_call=step)
        report.update(latency_forward_ms=forward.median_ms,
                      latency_forward_backward_ms=train.median_ms,
                      latency_repeats=repeat, latency_warmup=warmup)
    return report


def _static_figures(module: nn.Module, shape: tuple[int, ...]):
    return (count_flops(module, shape), measure_peak_memory(module, shape, backward=False),
            measure_peak_memory(module, shape, backward=True))


class _InputConvolution(Exception):
    """Stops a forward pass at the first convolution that receives the input tensor."""

    def __init__(self, name: str, conv: nn.Conv2d):
        super().__init__(name)
        self.name, self.conv = name, conv


def _check_input_channels(module: nn.Module, shape: tuple[int, ...]) -> None:
    """Refuse an input shape whose C differs from the input channels of the first convolution
    that receives the input tensor, found by a forward pass stopped there (run it on a meta
    copy, see :func:`_meta_copy`, to make it free); otherwise the forward would fail deep in
    PyTorch. A module that cannot run this far on its device is measured, and fails, as before."""
    images = torch.empty(shape, device=_module_device(module))

    def stop_at(name: str):
        def hook(conv: nn.Conv2d, inputs: tuple) -> None:
            if inputs and inputs[0] is images:
                raise _InputConvolution(name, conv)
        return hook

    handles = [m.register_forward_pre_hook(stop_at(name)) for name, m in module.named_modules()
               if isinstance(m, nn.Conv2d)]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(images)
    except _InputConvolution as found:
        if found.conv.in_channels != shape[1]:
            text = "x".join(map(str, shape))
            raise GsbenchError(f"input shape {text}: the model takes {found.conv.in_channels} "
                               f"input channels (its convolution {found.name} receives the "
                               f"input), not {shape[1]}") from None
    except (NotImplementedError, RuntimeError):
        pass  # the figures below measure it on its own device, where a real error raises
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)


def _meta_copy(module: nn.Module) -> nn.Module:
    """A structurally identical copy whose tensors live on the meta device (no data)."""
    copied = copy.deepcopy(module)
    return copied.to_empty(device="meta")


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x3x512x512"`` -> (1, 3, 512, 512); anything else raises a GsbenchError."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise GsbenchError(f"input shape must look like 1x3x512x512 (N x C x H x W), got {text!r}")
    return shape


__all__ = ["FlopCount", "Latency", "PeakMemory", "count_flops", "count_parameters",
           "measure_latency", "measure_peak_memory", "parse_input_shape", "profile_model"]
