"""The local geometry of L_lambda around its optimum.

* ``certificate``: the dual certificate of the teacher (the vanishing-derivative
  pre-certificate eta*, its constants rho, rho', ||p*||) and the certificate terms
  of the conclusions C3/C4;
* ``smoothness``: the local smoothness of L_lambda (Hessian norm at a point, H3).
"""
