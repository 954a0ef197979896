"""autoseg: self-configuring segmentation of stroke lesions.

Axis order everywhere in the package: arrays are ``(C, Z, Y, X)`` (one image channel
is ``(Z, Y, X)``), spacings are ``(z, y, x)`` in millimetres. ``Z`` is the slowest
voxel axis of the file (NIfTI ``k``, the slice axis of stacked PNGs), ``X`` the fastest
(NIfTI ``i``). Affines keep the NIfTI convention: they map voxel indices ``(i, j, k)``
= ``(x, y, z)`` to RAS millimetres.
"""

__version__ = "0.1.0"
