"""Worker processes for backends whose framework must stay out of the gateway process (TensorFlow):
the supervisor on the gateway side, the frame wire format, and the worker's entry point."""
