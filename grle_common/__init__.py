"""What every package of the toolkit shares: atomic file output and digests
(:mod:`grle_common.fileio`) and the command-line convention (:mod:`grle_common.cli`).

Standard library only, so that ``offload`` stays importable without torch or torchvision.
"""
