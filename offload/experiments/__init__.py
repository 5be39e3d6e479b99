"""Experiments of the GRLE paper (Figs. 4-8) and topology generalisation: `python -m offload.experiments`."""
