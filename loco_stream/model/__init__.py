"""The LoCo network in torch (training and export only; the runtime runs exported graphs)."""

from .lcc import locality_loss
from .loco import LoCo, LoCoOutput, WindowGraph, point_grid

__all__ = ["LoCo", "LoCoOutput", "WindowGraph", "locality_loss", "point_grid"]
