"""driftloop: the closed loop of model serving, drift detection and retraining, from a shell.

Every command reads the environment the services and the Python client read (`driftloop
settings` lists it). An expected failure (a service that does not answer, a refused call,
a bad setting, a missing file, malformed JSON) is one line on stderr and exit status 2;
--debug adds its traceback. A bug keeps its traceback. --json (on every command that
answers) prints the result as JSON on stdout and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from importlib import import_module
from typing import Any, NoReturn

from driftloop.cli.failures import EXIT_FAILED, explain

# Every top-level command, in the order `--help` lists them: the module whose
# `add_commands` defines it, and its one-line summary. Only the module of the command
# being run (or whose help is asked) is imported: `driftloop --help` imports none, so it
# prints at once instead of loading gRPC, Kafka, ClickHouse and numpy first.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": (
        "driftloop.cli.commands",
        "run everything on this machine until Ctrl-C (standalone mode)",
    ),
    "status": ("driftloop.cli.commands", "health of every service, the broker and ClickHouse"),
    "settings": (
        "driftloop.cli.commands",
        "every setting: its value here and where it comes from, the default, the meaning",
    ),
    "kafka": ("driftloop.cli.commands", "run a local single-node Apache Kafka broker (KRaft)"),
    "topics": ("driftloop.cli.commands", "create the driftloop topics (idempotent)"),
    "schema": ("driftloop.cli.commands", "print or apply the ClickHouse schema"),
    "demo": (
        "driftloop.cli.commands",
        "the closed loop end to end: drift, retrain, gate, canary, promotion (see README)",
    ),
    "models": ("driftloop.cli.models", "register, list, show and alias model versions"),
    "predict": (
        "driftloop.cli.models",
        "predict one row (JSON) or a JSON-lines file of rows, through the gateway",
    ),
    "routing": ("driftloop.cli.routing", "routing policies and rollouts (through the gateway)"),
    "drift": ("driftloop.cli.drift", "drift reports, baselines, alerts, canary analysis"),
    "retrain": (
        "driftloop.cli.retrain",
        "continuous training: runs, their decisions and the training policy",
    ),
    "shadow": (
        "driftloop.cli.experiments",
        "shadow versions against live on the same requests (the shadow service)",
    ),
    "ab": (
        "driftloop.cli.experiments",
        "A/B test results per variant, with intervals that respect sticky keys",
    ),
    "report": (
        "driftloop.cli.report",
        "write a model's report: one HTML file that opens offline",
    ),
}

# Commands that run in the foreground until Ctrl-C and print progress: no --json.
FOREGROUND = {"up", "kafka", "demo"}

# Libraries whose warnings a short command does not show (DRIFTLOOP_LOG_LEVEL shows them;
# urllib3.connectionpool itself, as clickhouse-connect sets the level of "urllib3").
QUIET_LIBRARIES = ("aiokafka", "kafka", "urllib3.connectionpool", "clickhouse_connect")

# One example per command that has none in its description yet.
EXAMPLES = {
    "status": "driftloop status --json",
    "models register": "driftloop models register --model churn --data train.csv "
    "--target churned --alias champion",
    "models list": "driftloop models list --model churn --json",
    "models show": "driftloop models show --model churn --version champion --json",
    "models alias": "driftloop models alias --model churn --alias champion --version 3 "
    "--reason 'better auc'",
    "models history": "driftloop models history --model churn --at 2026-01-31T12:00:00",
    "predict": """driftloop predict --model churn --row '{"age": 41, "plan": "pro"}'""",
    "routing show": "driftloop routing show --model churn --json",
    "routing set": "driftloop routing set --model churn --stable 3 --ab a=3:50 --ab b=4:50",
    "routing rollout": "driftloop routing rollout --model churn --candidate 4 --strategy canary",
    "routing promote": "driftloop routing promote --model churn --reason 'looks good'",
    "routing rollback": "driftloop routing rollback --model churn --reason 'latency'",
    "drift report": "driftloop drift report --model churn --version champion --hours 6",
    "drift baseline": "driftloop drift baseline --model churn --version 3",
    "drift alerts": "driftloop drift alerts --model churn --limit 5 --json",
    "drift canary": "driftloop drift canary --model churn --stable 3 --candidate 4 --hours 1",
    "report": "driftloop report --model churn --hours 6 --out churn.html",
    "kafka": "driftloop kafka --data-dir .data/kafka",
    "topics": "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 driftloop topics",
    "schema": "driftloop schema print",
    "demo": "driftloop demo --change-after 4000",
}


# What the options many commands share mean, for those whose module gave no help.
COMMON_HELP = {
    "--model": "the model's name",
    "--version": "a version number or an alias",
    "--alias": "an alias name (champion, ...)",
    "--reason": "why (recorded with the change)",
    "--limit": "at most this many, newest first",
    "--task": "the kind of model to train (auto: from the target column)",
    "--seed": "seed of the training split and fit",
    "--l2": "L2 regularisation of the linear model",
    "--output-kind": "with --artifact: what the model predicts",
    "--stable": "the stable version",
    "--candidate": "the candidate version",
    "--shadow-percent": "share of requests mirrored to the shadow versions",
}


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped by paragraph, with example lines (indented, or after a line
    ending in ':') as written; each option's default after its help unless the help
    already says it or there is none to say."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip().split("\n\n"):
            lines = paragraph.splitlines()
            if lines[0].startswith(" ") or lines[0].rstrip().endswith(":"):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                flat = " ".join(line.strip() for line in lines)
                paragraphs.append(
                    textwrap.fill(flat, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(paragraphs)

    @staticmethod
    def has_default(action: argparse.Action) -> bool:
        """Whether the option has a default worth printing (not unset, off or empty)."""
        default = action.default
        unset = default is None or default is False or default in ("", [], argparse.SUPPRESS)
        return bool(action.option_strings) and not unset

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if self.has_default(action) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Every (sub-)parser of the CLI: its help formatted by HelpFormatter, and a usage
    error in one line (the rule of every expected failure), exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("driftloop").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_FAILED, f"driftloop: {where}{message} (see `{self.prog} --help`)\n")


class Version(argparse.Action):
    """--version: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib.metadata import version

        print(f"driftloop {version('driftloop-cli')}")
        parser.exit(0)


def selected(argv: Sequence[str]) -> str | None:
    """The top-level command named in argv (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command (command=None), or with `command` complete and the
    others as summaries only (what `main` builds: their modules are not imported; "" for
    none complete, as `driftloop --help` needs)."""
    parser = Parser(prog="driftloop", description=__doc__)
    parser.add_argument("--version", action=Version)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an expected failure too"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = {module for module, _ in COMMANDS.values()}
    if command is not None:
        wanted = {COMMANDS[command][0]} if command in COMMANDS else set()
    added: set[str] = set()
    for name, (module, summary) in COMMANDS.items():
        if module in wanted and module not in added:
            import_module(module).add_commands(sub)
            added.add(module)
        elif module not in wanted:
            sub.add_parser(name, help=summary, add_help=False)
    for name, (_, summary) in COMMANDS.items():
        # The order above is per module; the summaries here are the ones --help lists.
        _complete(sub.choices[name], name, summary)
    return parser


def _complete(parser: argparse.ArgumentParser, path: str, summary: str) -> None:
    """Give a command (and each of its sub-commands) a description, an example and --json,
    where its module did not."""
    sub = _subcommands(parser)
    if not parser.add_help:  # a summary only: its module is not loaded
        return
    if not parser.description:
        parser.description = f"{summary[0].upper()}{summary[1:]}."
    for action in parser._actions:
        if action.help is None and action.option_strings:
            action.help = COMMON_HELP.get(action.option_strings[-1], "")
        if not action.help and HelpFormatter.has_default(action):
            action.help = "(default: %(default)s)"
    if sub is None:
        if path in EXAMPLES and "example" not in parser.description:
            parser.description += f"\n\nexample:\n  {EXAMPLES[path]}"
        if path.split()[0] not in FOREGROUND and "--json" not in parser._option_string_actions:
            parser.add_argument(
                "--json", action="store_true", help="print the result as JSON, nothing else"
            )
        return
    for action in sub._choices_actions:
        _complete(sub.choices[action.dest], f"{path} {action.dest}", action.help or "")


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(selected(argv) or "").parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        line = explain(error)
        if line is None or args.debug:
            raise
        print(f"driftloop: {line}", file=sys.stderr)
        return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Configure logging for a terminal and run the command's coroutine."""
    from driftloop.kit.logging import configure_logging
    from driftloop.kit.settings import LoggingSettings, load_settings

    # A terminal tool: readable lines, warnings and up unless DRIFTLOOP_LOG_LEVEL says more.
    logging_settings = load_settings(LoggingSettings)
    level = logging_settings.level if "DRIFTLOOP_LOG_LEVEL" in os.environ else "WARNING"
    configure_logging(level, "text")
    if "DRIFTLOOP_LOG_LEVEL" not in os.environ and args.command not in FOREGROUND:
        # A command that fails says why in one line; the libraries' own warnings about the
        # same failure (a refused connection, its retries) would only repeat it.
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    code: int = asyncio.run(args.run(args))
    return code


if __name__ == "__main__":
    sys.exit(main())
