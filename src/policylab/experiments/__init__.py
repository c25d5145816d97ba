"""Claim checks, one module per paper, plus the quickstart showcase and the runner self-test.

Importing this package registers every experiment in `policylab.core.registry.EXPERIMENTS`.
"""

from policylab.experiments import (  # noqa: F401
    bapo,
    bnpo,
    cdsa,
    dpo_q,
    empg,
    igpo,
    ild,
    iq_lm,
    irl_llm,
    irl_misspec,
    karl,
    lite_ppo,
    lite_ppo_skew,
    mamql,
    mbrcsl,
    mdpo,
    nft,
    odice,
    offline_baselines,
    parl,
    policy_cliff,
    quickstart,
    rec,
    rm_ensemble,
    selftest,
    sqirl,
    ssorl,
    thr,
    tq_saco,
    traj_weight,
    ufo,
)
