"""The control plane: the management API (its own port, bearer token) that ``modelgate deploy`` calls."""
