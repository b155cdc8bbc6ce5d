"""The rigorous path: Arb ball arithmetic (python-flint) behind every ``rigorous: true``.

* ``arb_objective``: the kernel sums, the loss and their Taylor bounds on Arb balls,
  and the outward-rounded conversions between balls, fractions and decimal strings;
* ``sphere``: the certified maximum of a 1-homogeneous function over the unit sphere
  (branch and bound);
* ``duality``: the duality bound on the gap zeta(theta) = L_lambda(theta) - L*_lambda,
  certified when the sphere search is.
"""
