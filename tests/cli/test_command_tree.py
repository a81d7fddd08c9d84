"""Every command of the CLI, walked from the typer tree: each has help text on itself and on
every option, and each answers a bad argument and an unreachable database with one line on
stderr, exit code 2 and no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from jitprov.cli.main import app, main
from tests.conftest import TEST_SECRET_KEY

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"
#: commands that never open a database (the rest take --database-url)
NO_DATABASE = {"mapping check", "secrets init", "webhooks events"}
#: commands that start a server: with an unreachable database they must stop at once too
SERVERS = {"serve", "dev"}


def _leaves(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            yield from _leaves(command, path + " ")
        else:
            yield path, command


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def _required_args(command: Any) -> list[str]:
    """Plausible values for what the command requires, so it gets as far as the database."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = "1" if _numeric(param) else "x"
        args += [param.opts[0], value] if param.param_type_name == "option" else [value]
    return args


def _numeric(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)  # typer's own parameters
    if descriptor is not None:
        return descriptor.annotation in (int, float, int | None, float | None)
    return getattr(getattr(param, "type", None), "name", "") in ("integer", "float")


def test_the_tree_is_walked() -> None:
    assert len(COMMANDS) > 50
    assert {"tenant show", "secrets rotate", "webhooks events", "users list"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_option_has_help(path: str) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"`jitprov {path}` has no help text"
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert (getattr(param, "help", None) or "").strip(), \
                f"`jitprov {path} {param.opts[0]}` has no help text"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_an_unknown_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                   path: str) -> None:
    code, out, err = run(capsys, *path.split(), *_required_args(COMMANDS[path]),
                         "--no-such-option")
    assert code == 2
    assert err.startswith("error: No such option: --no-such-option")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - NO_DATABASE))
def test_an_unreachable_database_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        path: str) -> None:
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_DB_CONNECT_TIMEOUT", "2")
    code, out, err = run(capsys, *path.split(), *_required_args(COMMANDS[path]),
                         "--database-url", UNREACHABLE)
    assert code == 2, (out, err)
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    assert "nobody" not in err or "127.0.0.1:1" in err  # no more than the URL's safe form
