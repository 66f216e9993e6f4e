"""What differs between tasks: model, data, batch preparation and evaluation (one module per task)."""
