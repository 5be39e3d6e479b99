"""Suite-wide settings: headless plotting and a small, fixed thread count (2-core CI machine)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
