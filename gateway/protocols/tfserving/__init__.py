"""TF Serving's REST and gRPC APIs in front of every model, whatever its backend."""
