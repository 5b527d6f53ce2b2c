"""Built-in auth: the stock strategy kinds, and the strategy built from a run's
credential (through the auth kinds registered in the same plugin set)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import AuthStrategy, Connector
    from tapyard.plugins._registry import Plugins

hookimpl = pluggy.HookimplMarker("tapyard")


class AuthPlugin:
    """The built-in auth hooks of one plugin set."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins

    @hookimpl(trylast=True)
    def tapyard_register_auth_strategies(self, register: Callable[[str, type[AuthStrategy]], None]) -> None:
        from tapyard.auth import CLOUD_STRATEGIES, OAUTH_STRATEGIES, STOCK_AUTH_STRATEGIES

        for kind, cls in {**STOCK_AUTH_STRATEGIES, **OAUTH_STRATEGIES, **CLOUD_STRATEGIES}.items():
            register(kind, cls)

    @hookimpl(trylast=True)
    def tapyard_auth_strategy(
        self, connector: Connector, config: BaseModel, credentials: BaseModel | None
    ) -> AuthStrategy | None:
        if credentials is None:
            return None
        from tapyard.base import ConfigError, secret_values
        from tapyard_credentials import redactor

        redactor.register(*secret_values(credentials))
        kind = getattr(credentials, "kind", None)
        strategies = self._plugins.auth_strategies()
        if kind not in strategies:
            raise ConfigError(
                f"credential kind {kind!r} is not a known auth strategy; known: {', '.join(sorted(strategies))}"
            )
        return strategies[kind].from_credentials(credentials)


def plugin(plugins: Plugins) -> AuthPlugin:
    return AuthPlugin(plugins)
