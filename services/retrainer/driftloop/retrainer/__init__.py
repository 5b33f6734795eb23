"""The retrainer service: hosts the model registry; continuous training joins it later."""
