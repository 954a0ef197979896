"""One preprocessed case through every network: sliding window, TTA, fold ensembling.

Within one network, windows and mirrors are averaged as logits; across networks (folds, or
configurations at the same spacing) the softmax probabilities are averaged, because two
models' logits need not share a scale while their probabilities do. Saved probability maps
are ensembled the same way (:mod:`autoseg.inference.ensemble`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from autoseg.core.cpu import cpu_threads, flushed_denormals
from autoseg.core.resources import BusyElsewhere
from autoseg.inference.settings import InferenceSettings
from autoseg.inference.sliding_window import NetworkFn, sliding_window_inference
from autoseg.inference.tta import Axes, mirror_combinations, mirrored
from autoseg.networks.base import channels_last, to_channels_last
from autoseg.networks.bf16_speed import cpu_bf16_faster
from autoseg.preprocessing.case import background_outside_body
from autoseg.preprocessing.properties import PreprocessedCase

_NEIGHBOURS = BusyElsewhere()  # read once per case: what other processes used meanwhile


def mirror_set(settings: InferenceSettings) -> list[Axes]:
    """The axis combinations TTA runs (only the identity when TTA is off)."""
    if not settings.tta or not settings.mirror_axes:
        return [()]
    if settings.mirror_subset is not None:
        return [tuple(c) for c in settings.mirror_subset]
    return mirror_combinations(settings.mirror_axes)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """float16 on CUDA (tensor cores, half the memory); bf16 on a CPU with AMX, where the
    20 held-out ATLAS-like heads of a 3d_hybrid took 6.2 s a case instead of 11.7 and their
    labels matched float32's to a Dice of 0.993-1.0 (median 1.0); likewise on a CPU where
    a bf16 forward pass is timed faster (:mod:`~autoseg.networks.bf16_speed`); None
    elsewhere. Only the forward runs, which the oneDNN bug of
    :mod:`~autoseg.training.bf16_check` (a weight gradient) does not touch."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_faster("inference"):
        return torch.bfloat16
    return None


def _autocast(network_fn: NetworkFn, device: torch.device, dtype: torch.dtype) -> NetworkFn:
    """Run the network under autocast; logits come back in float32 for the accumulation."""

    def predict(inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=dtype):
            return network_fn(inputs).float()

    return predict


def _channels_last(network_fn: NetworkFn) -> NetworkFn:
    """Feed 3D windows channels-last (see :func:`~autoseg.networks.base.channels_last`)."""

    def predict(inputs: torch.Tensor) -> torch.Tensor:
        return network_fn(channels_last(inputs))

    return predict


def network_function(network: Callable, settings: InferenceSettings) -> NetworkFn:
    """The network wrapped for inference: channels-last 3D windows (a module's 3D weights
    are made channels-last too), mirroring TTA, and autocast when asked."""
    combinations = mirror_set(settings)
    device = torch.device(settings.device)
    if settings.dim == 3 and isinstance(network, torch.nn.Module):
        network = _channels_last(to_channels_last(network))
    fn = network if combinations == [()] else mirrored(network, combinations)
    dtype = autocast_dtype(device) if settings.amp else None
    return fn if dtype is None else _autocast(fn, device, dtype)


def predict_logits(
    network: Callable, image: torch.Tensor, settings: InferenceSettings
) -> torch.Tensor:
    """Sliding-window logits ``(K, *spatial)`` of one network, TTA included."""
    return sliding_window_inference(
        network_function(network, settings),
        image,
        settings.patch_size if settings.dim == 3 else settings.patch_size[-2:],
        settings.num_classes,
        step=settings.step,
        batch_size=settings.batch_size,
        gaussian=settings.gaussian,
        sigma_scale=settings.sigma_scale,
        device=settings.device,
        progress=settings.progress,
        slices=settings.slices,
        slice_padding=settings.slice_padding,
    )


def predict_case(
    networks: Sequence[Callable], image: np.ndarray | torch.Tensor, settings: InferenceSettings
) -> np.ndarray:
    """Class probabilities of one preprocessed case, averaged over networks and mirrors.

    Each network's logits are divided by ``settings.temperature`` before its softmax
    (calibration), so the folds average calibrated probabilities.

    Args:
        networks: one callable per fold (``nn.Module`` in eval mode, on ``settings.device``),
            each mapping ``(B, C_in, *patch) -> (B, K, *patch)`` logits.
        image: preprocessed ``(C, Z, Y, X)`` (float32 or float16).
        settings: window, TTA and device settings; ``settings.dim == 2`` runs 2D networks
            slice by slice with ``settings.slices`` neighbours as channels.

    Returns:
        float32 probabilities ``(K, Z, Y, X)`` summing to 1 over K.
    """
    if not networks:
        raise ValueError("predict_case needs at least one network")
    image = torch.as_tensor(image)
    if torch.device(settings.device).type == "cpu":
        # no more threads than the quota runs and the neighbours leave free
        cpu_threads(busy_elsewhere=_NEIGHBOURS.cores())
    with torch.inference_mode(), _eval_mode(networks), flushed_denormals(settings.device):
        total: torch.Tensor | None = None
        for network in networks:
            logits = predict_logits(network, image, settings)
            if settings.temperature != 1.0:
                logits = logits.div_(settings.temperature)
            probabilities = torch.softmax(logits, dim=0)
            total = probabilities if total is None else total.add_(probabilities)
        total /= len(networks)
        return total.cpu().numpy()


def predict_preprocessed(
    networks: Sequence[Callable], case: PreprocessedCase, settings: InferenceSettings
) -> np.ndarray:
    """:func:`predict_case` of a case from ``preprocess_case``, background outside its body
    mask (where training never supervised the networks); what every writer predicts."""
    return background_outside_body(predict_case(networks, case.data, settings), case.body)


@contextlib.contextmanager
def _eval_mode(networks: Sequence[Callable]) -> Iterator[None]:
    """Put modules in eval mode for the prediction (deep supervision off, BN frozen)."""
    modules = [n for n in networks if isinstance(n, torch.nn.Module)]
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)
