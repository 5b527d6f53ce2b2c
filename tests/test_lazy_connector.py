"""tapyard.base.LazyConnector: a connector distribution's connector is made on first
use, once, even when threads ask for it at the same time."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from tapyard.base import LazyConnector

MODULE = '''
import time

MADE = []


class SlowConnector:
    name = "slow"

    def __init__(self) -> None:
        time.sleep(0.05)  # a slow import or constructor: other threads ask meanwhile
        MADE.append(self)
'''


def test_made_on_first_use_once_across_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_acme_connector.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_acme_connector", raising=False)
    lazy = LazyConnector("lazy_acme_connector", "SlowConnector")
    assert "lazy_acme_connector" not in sys.modules  # nothing imported until asked
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(lazy())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = sys.modules["lazy_acme_connector"].MADE
    assert len(made) == 1
    assert all(connector is made[0] for connector in got) and len(got) == 8

    module_getattr = lazy.module_getattr("tapyard_acme")
    assert module_getattr("connector") is made[0]
    with pytest.raises(AttributeError, match="module 'tapyard_acme' has no attribute 'other'"):
        module_getattr("other")


def test_the_sdk_connectors_are_made_lazily_and_registered() -> None:
    import tapyard
    import tapyard_erp
    import tapyard_salesforce
    import tapyard_stripe

    assert tapyard_stripe.connector is tapyard_stripe.connector
    assert tapyard_stripe.connector.name == "stripe"
    assert tapyard_salesforce.connector.name == "salesforce"
    assert tapyard_erp.connector.name == "erp"
    with pytest.raises(AttributeError):
        tapyard_stripe.not_there  # noqa: B018
    # registered after their modules were imported (which sets the packages' _connector)
    connectors = tapyard.collect_connectors()
    for name, module in (("stripe", tapyard_stripe), ("salesforce", tapyard_salesforce), ("erp", tapyard_erp)):
        assert connectors[name] is module.connector
