"""The grid cell and model shape, declared in infra/cell.py beside the comparisons made of them."""

from infra.cell import CELL_AXES, FACTS_PASS, Cell, Shape

__all__ = ["CELL_AXES", "FACTS_PASS", "Cell", "Shape"]
