"""Fixtures shared by the whole suite.

Integration fixtures start real parts: the gateway simulator as its own
process on 127.0.0.1, real Redis, the real database.
"""

from tests.fixtures.engine import engine  # noqa: F401
from tests.fixtures.platform import platform  # noqa: F401
from tests.fixtures.redis_server import private_redis  # noqa: F401
from tests.fixtures.simulator import gateway_sim  # noqa: F401
