"""Backends for the model's operations: the one dispatch point (``dispatch``), the CPU backend (``cpu``), and the
compiled C kernels it uses with their typed bindings (``build``, ``field``, ``fir``, ``winograd``, ``modulation``),
and the gradient backend (``grad``) the inversion's gradient steps run.

``use("ref")`` / ``use("cpu")`` / ``use("grad")`` (or ``$EG3D_BACKEND``) chooses the backend; ``EG3D_NATIVE=0`` keeps
the CPU backend off the compiled kernels.
"""
from .dispatch import BACKENDS, current, use

__all__ = ["BACKENDS", "current", "use"]
