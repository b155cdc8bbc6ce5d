"""The certified basin of the lambda-optimum at exact width (``checker.basin.basin``), its verifier
(``checker.basin.verify``) and the exact box cover (``checker.basin.cover``)."""
