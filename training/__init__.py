"""Fine-tuning cross-encoders, and the product data they learn from."""
