"""Every subcommand and every option of ``openrecipe`` says what it is for in ``--help``."""

from __future__ import annotations

import argparse

from openrecipe.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def test_every_subcommand_and_option_has_help() -> None:
    sub = _subparsers(build_parser())
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    missing = []
    for verb, parser in sub.choices.items():
        if not (helps.get(verb) or "").strip():
            missing.append(f"{verb}: no help line")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{verb} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "no help text: " + ", ".join(missing)


def test_help_renders_for_every_verb(capsys) -> None:
    parser = build_parser()
    for verb in _subparsers(parser).choices:
        try:
            parser.parse_args([verb, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert verb in capsys.readouterr().out
