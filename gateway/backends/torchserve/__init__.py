"""TorchServe as a backend: the backend itself, the gateway's own (managed) TorchServe process,
its HTTP client, the .mar packaging (and its ``modelgate torchserve-package`` command), and the
handler plus tensor frames that run inside TorchServe's Python worker."""
