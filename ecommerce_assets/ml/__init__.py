"""Machine-learning models trained on the warehouse."""
