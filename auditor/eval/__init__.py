"""Evaluation: dataset readers, metrics, runners. Nothing here ever drops an item silently."""
