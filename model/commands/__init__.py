"""The command-line tools (`train`, `evaluate`, `calibrate`): library code in model/ imports none of them."""

from typing import Annotated

import typer

from model import synthetic, validation

# Options that `train` and `calibrate` share: the synthetic anomalies their validation is made of.
Kinds = Annotated[str, typer.Option(help=synthetic.KINDS_HELP)]
Draws = Annotated[int, typer.Option(min=1, help=synthetic.DRAWS_HELP)]
RelativeError = Annotated[bool, typer.Option(help=validation.RELATIVE_ERROR_HELP)]
# A camera's mask, as the service's PUT /api/streams/{id}/mask takes it (model/masks.py); `calibrate` and `evaluate`
Mask = Annotated[
    str | None,
    typer.Option(
        help="Polygons the score ignores, as the stream's mask in the service: JSON [[[x, y], ...], ...] in "
        "fractions of the frame (e.g. a clock: '[[[0.7,0],[1,0],[1,0.2],[0.7,0.2]]]')"
    ),
]
