"""lanon.cli."""
