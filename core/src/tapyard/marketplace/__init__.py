"""The marketplace, author side: the conformance kit (:mod:`tapyard.marketplace.kit`),
the scaffold (:mod:`tapyard.marketplace.scaffold`) and the cassette secret scan
(:mod:`tapyard.marketplace.scan`). The registry's publish gate runs the same kit."""
