"""placeholder"""

from typing import Any


def add_parser(commands: Any) -> None:
    p = commands.add_parser("demo")
    p.set_defaults(handler=lambda a: 0)
