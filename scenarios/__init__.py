"""Scripted Tavus conversations ("scenarios") and how each turn is encoded as Tavus sends it.

Shared by the emulator (which plays them against an endpoint) and the playground (which lists
them and composes requests from them). The shipped scenarios are package data in `library/`,
read with `importlib.resources`, so an installed wheel has them.
"""

from scenarios.model import (
    PerceptionMode,
    Scenario,
    ScenarioError,
    Turn,
    load_scenario,
    scenario_request,
    shipped_scenarios,
)

__all__ = [
    "PerceptionMode",
    "Scenario",
    "ScenarioError",
    "Turn",
    "load_scenario",
    "scenario_request",
    "shipped_scenarios",
]
