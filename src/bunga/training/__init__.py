"""Training and promotion: the measurement and photo models trained and tracked in MLflow, their
evaluation and report figures, and the promotion gate. Never imported by serving."""
