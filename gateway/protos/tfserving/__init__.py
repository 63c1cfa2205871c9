"""TF Serving API messages and gRPC stubs, generated without TensorFlow (see :mod:`.generate`)."""
