"""Shared service kit: settings, structured logging, domain errors and the gRPC server."""
