"""skysift: survey data to deep-learning science, reproducibly.

The library behind the skysift Snakemake workflow. Subpackages hold pure
algorithms (arrays in, arrays and tables out); file I/O lives in
:mod:`skysift.io` and provenance in :mod:`skysift.provenance`.
"""

from skysift._version import __version__

__all__ = ["__version__"]
