"""Segmentation networks, built by name from a plans configuration's ``network`` entry.

``build_network({"name": "3d_hybrid", "kwargs": {...}})`` returns a plain ``nn.Module``
whose input is ``(B, in_channels, *patch_size)``; ``list_networks()`` names the choices.
Output contract: see ``autoseg.networks.base``.
"""

from autoseg.networks import hybrid, lcnn, unet25d  # noqa: F401  (register the networks)
from autoseg.networks.base import FeatureMap, SegmentationNetwork
from autoseg.networks.registry import build_network, list_networks, register_network

__all__ = [
    "FeatureMap",
    "SegmentationNetwork",
    "build_network",
    "list_networks",
    "register_network",
]
