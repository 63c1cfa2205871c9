"""Open Inference Protocol (V2): REST (JSON and binary tensors), gRPC, and the OpenAPI description."""
