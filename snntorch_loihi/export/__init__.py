"""snnTorch -> Loihi network description -> NIR, and back.

- :func:`extract`: a quantization-aware torch network -> :class:`~snntorch_loihi.ir.LoihiNetwork`
  (registers exactly as the training forward uses them).
- :func:`to_nir` / :func:`from_nir_graph`: ``LoihiNetwork`` <-> standard NIR graph with the
  integer registers in ``metadata["loihi"]``.
- :func:`export` / :func:`from_nir`: the user-facing pair (torch network -> NIR graph or file,
  NIR graph or file -> quantization-aware torch network).
"""

from .api import export, from_nir, to_module
from .extract import extract
from .nir_io import DT, from_nir_graph, to_nir

__all__ = ["DT", "export", "extract", "from_nir", "from_nir_graph", "to_module", "to_nir"]
