"""Protocol-neutral core: types, errors, repository, backends registry, data plane.

Nothing in this package imports a web framework or grpc; the protocol adapters in
``gateway.protocols`` call into it.
"""
