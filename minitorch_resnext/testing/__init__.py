"""Tools for checking gradients: `gradcheck`, and hypothesis strategies in `.strategies`."""

from .gradcheck import GradcheckReport, gradcheck

__all__ = ["GradcheckReport", "gradcheck"]
