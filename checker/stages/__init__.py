"""The stages of the whole algorithm from random initialization: stage 1 (early
feature learning on the first layer), stage 2 (the second layer fitted with the
first fixed) and stage 3 (the local phase that ``checker.theorem1`` checks)."""
