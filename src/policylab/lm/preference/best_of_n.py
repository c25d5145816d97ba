"""Best-of-n sampling measured without resampling: the unbiased estimator and its analytic KL.

From a pool of N scored samples per prompt sorted ascending by the proxy score, the expected gold
score of the best-of-n pick (n <= N, drawn without replacement) is
    E[gold of BoN] = sum_{i=n}^{N} C(i - 1, n - 1) / C(N, n) * gold_(i)
(the i-th smallest proxy is the maximum of n draws with that probability; Coste et al.'s
`unbiased_sampler`), and the policy it defines is KL_BoN(n) = log n - (n - 1) / n nats from the
sampling policy (an analytic upper bound, not a measured KL).
"""

from __future__ import annotations

import math

import torch

from policylab.core.errors import ConfigError


def kl_best_of_n(n: int) -> float:
    if n < 1:
        raise ConfigError(f"n = {n} is not allowed: best-of-n needs n >= 1")
    return math.log(n) - (n - 1) / n


def best_of_n_weights(n: int, pool: int) -> torch.Tensor:
    """[pool] probability that the i-th smallest of `pool` items is the maximum of n drawn without replacement."""
    if not 1 <= n <= pool:
        raise ConfigError(f"n = {n} is not allowed with a pool of {pool}: need 1 <= n <= pool")
    i = torch.arange(1, pool + 1, dtype=torch.float64)
    log_w = (torch.lgamma(i) - math.lgamma(n) - torch.lgamma((i - n + 1).clamp(min=1))  # log C(i-1, n-1)
             - (math.lgamma(pool + 1) - math.lgamma(n + 1) - math.lgamma(pool - n + 1)))  # - log C(N, n)
    return torch.where(i >= n, log_w.exp(), torch.zeros_like(i))


def best_of_n_value(proxy: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """[P]: the expected `values` of the best-of-n pick by `proxy` for each prompt, from [P, N] pools.

    Ties in the proxy are broken by position (the order of a stable sort)."""
    if proxy.shape != values.shape or proxy.ndim != 2:
        raise ConfigError(f"proxy {tuple(proxy.shape)} and values {tuple(values.shape)} must both be [prompts, pool]")
    order = proxy.argsort(dim=-1, stable=True)
    return (values.gather(-1, order).double() * best_of_n_weights(n, proxy.shape[1])).sum(-1)
