"""One-shot (weight-sharing) search: the supernet, the policy that samples
its paths and the search loop."""
