"""The marketplace.

Author side: the conformance kit (:mod:`tapyard.marketplace.kit`), the
scaffold (:mod:`tapyard.marketplace.scaffold`) and the cassette secret scan
(:mod:`tapyard.marketplace.scan`). The registry's publish gate runs the same kit.

Client side: search, verified install, publish and mirror. The registry server
is the separate ``tapyard-registry`` distribution; this package never imports
it. Everything a registry sends is verified with python-tuf before it is used
(:mod:`tapyard.marketplace._trust`), and wheels are checked for their contents
on both sides (:mod:`tapyard.marketplace._wheel`).

It may import every layer below it (base, http, auth, destinations, sources,
plugins, engine), the facade and ``tapyard.testing``; nothing below imports it.
"""
