"""`python -m blast.web`: daphne, with its access log redacted.

Takes daphne's own command line (`python -m blast.web -b 127.0.0.1 -p 8000
blast.asgi:application`); the only difference is that query-string tokens
and bearer credentials never reach the access log.
"""

from __future__ import annotations

import daphne.cli

from blast.logs import _redacting_access_log


def main() -> None:
    daphne.cli.AccessLogGenerator = _redacting_access_log()  # type: ignore[attr-defined]
    daphne.cli.CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
