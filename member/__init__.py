"""lanon.member."""
