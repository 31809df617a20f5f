"""Cutout triplets (science, aligned reference, difference) around candidates.

:func:`extract_triplets` is pure (arrays in, arrays out, vectorised);
:func:`write_cutout_product` and :func:`make_cutouts` are the I/O edge.
"""

from skysift.cutouts.extract import (
    CHANNELS,
    Triplets,
    extract_triplets,
    make_cutouts,
    write_cutout_product,
)

__all__ = ["CHANNELS", "Triplets", "extract_triplets", "make_cutouts", "write_cutout_product"]
