def loss(x: float, y: float) -> float:
    """Smallest at x=1, y=-2."""
    return (x - 1.0) ** 2 + (y + 2.0) ** 2
