"""Offloading: the simulator (``offload.sim``), the agents (``offload.agents``) and the
experiments (``offload.experiments``)."""

import warnings

# torch-geometric scripts a few helpers with ``torch.jit.script`` at import time, which
# torch >= 2.10 deprecates with a FutureWarning on every ``offload`` command (``--help``
# included); nothing a user of this package can act on. Filtered here, at the earliest import
# of the package, by its exact message so that no other warning is hidden.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
