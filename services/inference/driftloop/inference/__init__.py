"""The inference service: hosts model versions from the registry and predicts with them."""
