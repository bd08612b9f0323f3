"""The check names, where the verifier's modules (and the run-time checks) import them from.

The enum itself is `kernelwright.check_names` (core/check_names.py): a plain record every stage
may import, the compiler's native rules and audit included.
"""

from __future__ import annotations

from kernelwright.check_names import STATIC_CHECKS, Check

__all__ = ["STATIC_CHECKS", "Check"]
