"""The churn model: point-in-time features, training and evaluation, scoring, as Dagster assets."""
