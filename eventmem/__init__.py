"""eventmem."""
