"""lanon.gateway."""
