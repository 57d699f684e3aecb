"""lanon.lab."""
