"""Exact tools for finite MDPs: the MDP arrays, planning (hard and soft), occupancies, reward distances."""

from policylab.tabular.distances import (
    canonicalize,
    epic_distance,
    normalized_regret,
    starc_distance,
)
from policylab.tabular.mdp import TabularMDP, random_mdp, sticky_actions
from policylab.tabular.planning import (
    NotConverged,
    boltzmann_policy,
    mce_policy,
    occupancy,
    optimal_policy,
    policy_evaluation,
    soft_value_iteration,
    uniform_policy,
    value_iteration,
)

__all__ = ["NotConverged", "TabularMDP", "boltzmann_policy", "canonicalize", "epic_distance", "mce_policy",
           "normalized_regret", "occupancy", "optimal_policy", "policy_evaluation", "random_mdp",
           "soft_value_iteration", "starc_distance", "sticky_actions", "uniform_policy", "value_iteration"]
