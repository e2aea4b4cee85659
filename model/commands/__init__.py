"""The command-line tools (`train`, `evaluate`, `calibrate`): library code in model/ imports none of them."""

from typing import Annotated

import typer

from model import synthetic, validation

# Options that `train` and `calibrate` share: the synthetic anomalies their validation is made of.
Kinds = Annotated[str, typer.Option(help=synthetic.KINDS_HELP)]
Draws = Annotated[int, typer.Option(min=1, help=synthetic.DRAWS_HELP)]
RelativeError = Annotated[bool, typer.Option(help=validation.RELATIVE_ERROR_HELP)]
