"""Pin this benchmark process to one core with single-threaded math libraries.

Import it before numpy, scipy or torch: the thread-count variables are read when
those libraries load. Per-core rates are what the targets are stated in.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
try:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
except (AttributeError, OSError):
    pass
