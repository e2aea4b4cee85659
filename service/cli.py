"""`serve`: the scoring service on uvicorn, configured by flags, MNAD_* variables or .env.

serve                                    # weights/ on cuda if available, 127.0.0.1:8000
serve --stream demo.mkv --port 8080      # plus a local file played in a loop (the demo)
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError
from pydantic_settings import CliApp

from service.app import create_app
from service.capture.sources import check_local_file, is_local_file, redact
from service.core.policy import SourcePolicy, SourceRefused
from service.core.settings import Settings


def cli(argv: list[str] | None = None) -> None:
    try:
        settings = CliApp.run(Settings, cli_args=sys.argv[1:] if argv is None else argv)
    except ValidationError as e:
        sys.exit(f"serve: invalid settings:\n{e}")
    policy = SourcePolicy.parse(settings.source_networks, settings.source_schemes)
    for url in settings.stream:
        if is_local_file(url):
            if problem := check_local_file(url):
                sys.exit(f"serve: --stream {problem}")
            continue
        try:  # a literal address is judged now; names are resolved and judged at every connect
            policy.check(url, resolve=False)
        except SourceRefused as e:
            sys.exit(f"serve: --stream {redact(url)}: {e} (see --source-schemes, --source-networks)")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    cli()
