"""``unicom-serve``: a search service and a web page over an index built by ``unicom-embed``,
and a browser of the pseudo classes of a ``unicom-cluster`` output (docs/serve.md).

``create_app(config)`` (``unicom.serve.app``) builds the ASGI application; ``unicom.serve.cli``
is the command. Queries are embedded by the index's own encoder, loaded once.
"""
