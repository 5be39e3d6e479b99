"""Multi-exit VGG-16 on CIFAR-10 (paper Sec. VI-B): model, data, two-stage training, export.

Modules: ``model`` (the 17-exit network and its exit table), ``data`` (CIFAR-10 sources and the
tensor loader), ``lit`` (the LightningModule), ``train`` (``python -m multiexit.train``),
``evaluate`` (``python -m multiexit.evaluate``), ``export`` (safetensors + manifest),
``errors``. See docs/multiexit.md.
"""
