"""A dashboard query as ClickHouse receives it from Grafana, for tests that run the
dashboards' SQL (deploy/grafana) on real data.

The steps are Grafana's, in its order:
1. the plugin's frontend replaces `$__conditionalAll(phrase, $var)` with `1=1` when the
   variable is "All" or empty, else with the phrase (CHDatasource.applyConditionalAll);
2. Grafana's template service replaces the variables: `${var:singlequote}` quotes each
   value; a bare `$var` or `${var}` takes the plugin's format (the values of a multi-value
   variable as 'a','b', a single value as it is); unknown names are left as they are;
3. the plugin's backend expands its macros (grafana/clickhouse-datasource pkg/macros:
   `$__timeFilter(column)` -> `column >= toDateTime(from) AND column <= toDateTime(to)`,
   `$__timeInterval(column)`, `$__interval_s`, `$__fromTime` ...), the arguments split at
   top-level commas and trimmed.
Grafana would send a `$` left over to ClickHouse as it is; here it is an error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """A template variable's current value: its values, whether "All" is selected, and
    whether the variable is multi-value (Grafana then hands the plugin a list)."""

    values: tuple[str, ...]
    all: bool = False
    multi: bool = False


@dataclass(frozen=True)
class Request:
    start: dt.datetime
    end: dt.datetime
    interval: dt.timedelta
    variables: Mapping[str, Selection]


def render(sql: str, request: Request) -> str:
    text = macros(template(conditional_all(sql, request.variables), request.variables), request)
    if "$" in text:
        raise ValueError(f"unexpanded variable or macro in: {text}")
    return text


# --- 1. $__conditionalAll, as the plugin's frontend does it --------------------------------

CONDITIONAL_ALL = "$__conditionalAll("


def conditional_all(sql: str, variables: Mapping[str, Selection]) -> str:
    index = sql.rfind(CONDITIONAL_ALL)
    while index != -1:
        params = _frontend_args(sql, index + len(CONDITIONAL_ALL) - 1)
        if len(params) != 2:
            return sql
        name = params[1].strip().removeprefix("$")
        selection = variables.get(name)
        empty = selection is not None and (selection.all or not any(selection.values))
        phrase = "1=1" if empty else params[0]
        sql = sql.replace(f"{CONDITIONAL_ALL}{params[0]},{params[1]})", phrase, 1)
        index = sql.rfind(CONDITIONAL_ALL)
    return sql


def _frontend_args(sql: str, open_paren: int) -> list[str]:
    """The plugin's getMacroArgs: split at commas one bracket deep (quotes not parsed)."""
    args: list[str] = []
    depth, last = 0, 1
    rest = sql[open_paren:]
    for match in re.finditer(r"[(),]", rest):
        token = match.group()
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == "," and depth == 1:
            args.append(rest[last : match.start()])
            last = match.end()
        if depth == 0:
            args.append(rest[last : match.start()])
            return args
    return []


# --- 2. template variables, as Grafana's template service does it --------------------------

VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::([^}]+))?\}")


def template(sql: str, variables: Mapping[str, Selection]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        selection = variables.get(name)
        if selection is None:
            return match.group(0)
        form = match.group(3)
        if form == "singlequote":
            return ",".join(_quoted(value) for value in selection.values)
        if form is not None:
            raise ValueError(f"format {form!r} of ${{{name}}} is not modelled here")
        if selection.multi:
            return ",".join(_quoted(value) for value in selection.values)
        return selection.values[0]

    return VARIABLE.sub(replace, sql)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


# --- 3. the plugin's backend macros ----------------------------------------------------------


def _date_time(moment: dt.datetime) -> str:
    return f"toDateTime({int(moment.timestamp())})"


def _date_time_ms(moment: dt.datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(moment.timestamp() * 1000)})"


def _date(moment: dt.datetime) -> str:
    return f"toDate('{moment.astimezone(dt.UTC):%Y-%m-%d}')"


def _seconds(request: Request) -> int:
    return int(max(request.interval.total_seconds(), 1))


def _between(column: str, request: Request, convert: Callable[[dt.datetime], str]) -> str:
    return f"{column} >= {convert(request.start)} AND {column} <= {convert(request.end)}"


def _one(args: list[str]) -> str:
    if len(args) != 1:
        raise ValueError(f"expected 1 argument, received {len(args)}")
    return args[0]


def _date_time_filter(args: list[str], request: Request) -> str:
    if len(args) != 2:
        raise ValueError(f"expected 2 arguments, received {len(args)}")
    date, time = args
    return f"({_between(date, request, _date)}) AND ({_between(time, request, _date_time)})"


MACROS: dict[str, Callable[[list[str], Request], str]] = {
    "fromTime": lambda args, r: _date_time(r.start),
    "toTime": lambda args, r: _date_time(r.end),
    "fromTime_ms": lambda args, r: _date_time_ms(r.start),
    "toTime_ms": lambda args, r: _date_time_ms(r.end),
    "timeFilter": lambda args, r: _between(_one(args), r, _date_time),
    "timeFilter_ms": lambda args, r: _between(_one(args), r, _date_time_ms),
    "dateFilter": lambda args, r: _between(_one(args), r, _date),
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "timeInterval": lambda args, r: (
        f"toStartOfInterval(toDateTime({_one(args)}), INTERVAL {_seconds(r)} second)"
    ),
    "timeInterval_ms": lambda args, r: (
        f"toStartOfInterval(toDateTime64({_one(args)}, 3), INTERVAL "
        f"{int(max(r.interval.total_seconds() * 1000, 1))} millisecond)"
    ),
    "interval_s": lambda args, r: str(_seconds(r)),
}
MACRO = re.compile(r"\$__(\w+)")


def macros(sql: str, request: Request) -> str:
    out, position = [], 0
    for match in MACRO.finditer(sql):
        if match.start() < position:
            continue  # inside the arguments of a macro already expanded
        name = match.group(1)
        if name not in MACROS:
            raise ValueError(f"$__{name} is not a macro of the ClickHouse plugin")
        end, args = match.end(), []
        if end < len(sql) and sql[end] == "(":
            close = _closing(sql, end)
            args = [arg.strip() for arg in _split(sql[end + 1 : close])]
            end = close + 1
        out += [sql[position : match.start()], MACROS[name](args, request)]
        position = end
    return "".join([*out, sql[position:]])


def _closing(sql: str, open_paren: int) -> int:
    depth = 0
    for index in range(open_paren, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unbalanced parentheses after {sql[:open_paren]}")


def _split(arguments: str) -> list[str]:
    if not arguments.strip():
        return []
    parts, depth, last = [], 0, 0
    for index, char in enumerate(arguments):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(arguments[last:index])
            last = index + 1
    return [*parts, arguments[last:]]
