"""Per-exit latency tables of the multi-exit VGG-16 and selection of the candidate exits.

Entry points: ``python -m profiling.measure`` (time every exit on CPU or GPUs),
``python -m profiling.merge`` (one latency column per device) and ``python -m profiling.select``
(candidate exits and a Fig. 3-style figure). See docs/profiling.md.
"""
