"""What the README and the docstrings show a user is what the code does: each example is executed or rendered.

The tests read README.md itself (and the docstrings), so an example that
stops being true fails here rather than rotting in the text.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from uuid import UUID

import orjson
import pytest
import redis

import aggregates.strategies
import api.app
import api.auth
import backbone.envelope
from actors.system import rebuild
from actors.system.layout import ServiceUrls
from actors.system.plan import RunPlan
from actors.system.status import Progress
from actors.system.supervisor import Supervisor
from api.app import ApiConfig, create_app, forensics_body
from api.auth import ApiTokens
from edge.feeds import BUNDLED_SYMBOLS, SyntheticFeed
from edge.system_keys import SystemKeys
from glassbox import Settings
from projections.checksums import REBUILT_TABLES
from projections.forensics import DecisionToExplain, regime_reasoning, strategy_selection
from tests.aggregates.test_strategies import strategy_example_source

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DESIGN = (ROOT / "docs" / "design.md").read_text()
PRODUCT = ("actors", "aggregates", "edge", "backbone", "projections", "api", "perf")
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"


# -- reading the README -----------------------------------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    """Body of each ``##``/``###`` section, by its title."""
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


SECTIONS = _sections(README)


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S)


def _block_starting(text: str, start: str) -> str:
    found = [b for b in _blocks(text) if b.startswith(start)]
    assert len(found) == 1, f"README: expected one example starting with {start!r}"
    return found[0]


def _spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks, ``\\|`` (a pipe inside a table) unescaped."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [s.replace("\\|", "|") for s in re.findall(r"`([^`\n]+)`", prose)]


def _table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [row for row in cells[2:] if row]  # past the header and its rule


# -- commands, flags and --help ---------------------------------------------------------------------------

GLASSBOX = Path(sys.executable).with_name("glassbox")
COMMAND = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?(glassbox |python3? -m [a-z_.]+|uvicorn )")


def _program(command: str) -> tuple[str, ...]:
    """The part of a command line that selects its --help: ('glassbox', 'replay', 'aggregates'), ('-m', 'perf.api')."""
    tokens = shlex.split(command.removeprefix("$ "))
    tokens[0] = Path(tokens[0]).name
    if tokens[0] in ("python", "python3"):
        return ("-m", tokens[2])
    if tokens[0] == "uvicorn":
        return ("uvicorn",)
    words = ["glassbox"]
    for token in tokens[1:]:
        if token.startswith(("-", "[")):
            break
        words.append(token)
    return tuple(words)


@functools.cache
def _help(program: tuple[str, ...]) -> tuple[str, str] | str:
    """(usage block, whole --help text) of a command, or why its --help failed."""
    if program[0] == "-m":
        argv = [sys.executable, *program]
    elif program[0] == "uvicorn":
        argv = [str(Path(sys.executable).with_name("uvicorn"))]
    else:
        argv = [str(GLASSBOX), *program[1:]]
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GLASSBOX_LOG_LEVEL": "WARNING"})
    if done.returncode:
        return f"{' '.join(program)} --help exits {done.returncode}: {done.stderr.strip()[-300:]}"
    text = done.stdout
    if program[0] == "uvicorn":
        return text, text  # click lists its options below the usage line
    return text.split("\n\n", 1)[0], text


def _prefetch(commands: list[str]) -> None:
    """Run the --help of every command, a few at a time (each starts an interpreter that imports numba)."""
    programs = {_program(c) for c in commands} - {p for p in map(_program, commands) if any("<" in w for w in p)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(_help, sorted(programs)))


def _usage(program: tuple[str, ...]) -> str:
    found = _help(program)
    return found[0] if isinstance(found, tuple) else ""


def _flags(command: str) -> list[str]:
    return re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", command)


def _check_command(command: str) -> list[str]:
    """What is untrue about one command line: its program, its flags and their listed alternatives."""
    program = _program(command)
    if any("<" in word for word in program):
        return []  # a placeholder such as perf.<scenario>
    found = _help(program)
    if isinstance(found, str):
        return [f"{command!r}: {found}"]
    usage, text = found
    wrong = [f"{command!r}: {' '.join(program)} has no option {flag}"
             for flag in _flags(command) if flag != "--help" and not re.search(rf"{flag}(?![\w-])", usage)]
    for alternatives in re.findall(r"[a-z][\w-]*(?:\|[a-z][\w-]*)+", command):
        wrong += [f"{command!r}: {' '.join(program)} --help never mentions {word!r}"
                  for word in alternatives.split("|") if word not in text]
    return wrong


def _readme_commands() -> list[tuple[str, str]]:
    """(section, command) for every command line the README shows, in prose, tables and examples."""
    found = []
    for title, body in SECTIONS.items():
        lines = [s for s in _spans(body) if COMMAND.match(s)]
        for block in _blocks(body):
            for line in block.splitlines():
                lines += [part.strip() for part in line.split("&&") if COMMAND.match(part.strip())]
        found += [(title, line) for line in lines]
    return found


def test_every_command_the_readme_shows_exists_with_those_flags() -> None:
    commands = _readme_commands()
    assert len(commands) > 30
    _prefetch([c for _, c in commands + _docstring_commands()])
    wrong = [w for _, command in commands for w in _check_command(command)]
    assert not wrong, "\n".join(wrong)


def test_every_flag_the_readme_names_alone_belongs_to_a_command_of_its_section() -> None:
    commands = _readme_commands()
    wrong = []
    for title, body in SECTIONS.items():
        programs = {_program(c) for t, c in commands if t == title}
        if title == "Backtesting":  # its flags are all the backtest's
            programs = {("glassbox", "backtest")}
        for span in _spans(body):
            if not span.startswith("--") or span == "--help":
                continue
            flag = _flags(span)[0]
            if not any(re.search(rf"{flag}(?![\w-])", _usage(p)) for p in programs):
                wrong.append(f"{title}: `{span}` is an option of none of {sorted(programs)}")
    assert not wrong, "\n".join(wrong)


def test_every_benchmark_takes_json_as_the_readme_says() -> None:
    scenarios = sorted({_program(c) for t, c in _readme_commands() if t == "Benchmark" and "perf." in c})
    benchmarks = sorted(("-m", f"perf.{p.stem}") for p in (ROOT / "perf").glob("*.py") if '"--json"' in p.read_text())
    assert scenarios == benchmarks  # every benchmark is in the README, and nothing else is called one
    assert all(re.search(r"--json(?![\w-])", _usage(p)) for p in scenarios)


def test_the_install_lines_name_what_pyproject_provides() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    install = _block_starting(SECTIONS["The two commands"], "python3 -m venv .venv && .venv/bin/pip install -q -e . &&")
    test_install = [b for b in _blocks(SECTIONS["The two commands"]) if "'.[test]'" in b]
    assert ".venv/bin/glassbox up" in install and test_install and ".venv/bin/pytest" in test_install[0]
    assert "test" in project["optional-dependencies"]
    assert project["scripts"]["glassbox"] == "actors.system.cli:main"
    assert GLASSBOX.exists()
    assert "microseconds" not in project["description"] + README


def test_the_api_alone_is_the_factory_uvicorn_is_pointed_at() -> None:
    import actors.system.api_main

    factories = [f for text in (README, api.app.__doc__ or "") for f in re.findall(r"uvicorn --factory ([\w.]+):(\w+)", text)]
    assert factories
    for module, name in factories:
        assert module == "actors.system.api_main" and callable(getattr(actors.system.api_main, name))


def _docstring_commands() -> list[tuple[str, str]]:
    """(file, command) for every command a docstring of the product shows, inline or as a literal block."""
    found = []
    for room in PRODUCT:
        for path in sorted((ROOT / room).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                doc = ast.get_docstring(node) or ""
                lines = re.findall(r"``([^`]+)``", doc) + [line.strip() for line in doc.splitlines()]
                found += [(str(path.relative_to(ROOT)), line) for line in lines if COMMAND.match(line)]
    return found


def test_every_command_a_docstring_shows_exists_with_those_flags() -> None:
    commands = _docstring_commands()
    assert len(commands) > 20
    wrong = [f"{path}: {w}" for path, command in commands for w in _check_command(command)]
    assert not wrong, "\n".join(wrong)


# -- settings -----------------------------------------------------------------------------------------------


def test_every_setting_the_readme_lists_is_read_by_the_product() -> None:
    source = "\n".join(p.read_text() for room in PRODUCT for p in (ROOT / room).rglob("*.py"))
    source += (ROOT / "glassbox.py").read_text()
    table = [row for row in _table_rows(SECTIONS["Commands"]) if row[0].startswith("`") and row[0][1:2].isupper()]
    names = [name for row in table for name in re.findall(r"`([A-Z][A-Z_]+)`", row[0])]
    assert len(names) >= 12
    assert [n for n in names if f'"{n}"' not in source] == []


def test_the_api_token_example_parses() -> None:
    example = re.search(r'GLASSBOX_API_TOKENS="([^"]+)"', api.auth.__doc__ or "")
    assert example
    tokens = ApiTokens.parse(example.group(1))
    assert len(tokens.scopes_by_token) == 2
    assert {"forensics:read", "metrics:read"} in [set(s) for s in tokens.scopes_by_token.values()]


# -- glassbox up ---------------------------------------------------------------------------------------------


def test_glassbox_up_prints_what_the_readme_shows() -> None:
    shown = _block_starting(SECTIONS["The two commands"], "redis ").splitlines()
    urls = {line.split()[0]: line.split()[1] for line in shown[:3]}
    home = Path(re.search(r"logs in (\S+)/run/logs", shown[3]).group(1))
    api_url = shown[4].split()[1]
    plan = RunPlan(bundled=list(BUNDLED_SYMBOLS), synthetic=SyntheticFeed.symbol_names(20))
    supervisor = Supervisor(Settings(home=home), plan)
    supervisor.layout.api_url = api_url
    services = ServiceUrls(urls["redis"], urls["kafka"], urls["postgresql"])
    assert supervisor.started_lines(services, [plan.symbols]) == shown[:6]

    progress = re.fullmatch(
        rf"\[ *(\d+)s\] ticks ({NUMBER}) \(({NUMBER})/s\)  decisions ({NUMBER})  dead letters ({NUMBER})  "
        rf"tick→committed p99 ({NUMBER}) ms  \| relay lag ({NUMBER})  forensics lag ({NUMBER})", shown[6])
    assert progress, shown[6]
    elapsed, ticks, rate, decisions, dead, p99, relay, forensics = (
        float(g.replace(",", "")) for g in progress.groups())
    line = Progress(ticks=int(ticks), decisions=int(decisions), dead_letters=int(dead), ticks_per_s=rate,
                    latency_us_p99=p99 * 1e3, relay_lag=int(relay), forensics_lag=int(forensics)).line(elapsed)
    assert line == shown[6]
    assert len(shown) == 7


# -- the forensics record -------------------------------------------------------------------------------------


def _forensics_example() -> tuple[str, dict]:
    block = _block_starting(SECTIONS["The API"], "$ curl")
    command, body = block.split("\n", 1)
    for shown, stands_for in ((", ...top 10}", ', "…": 0}'), ("{...20 features}", '{"…": 0}'), (", ...]", ', "…"]'),
                              ("[...]", '["…"]'), ("{...}", '{"…": 0}')):  # what the README elides: open
        body = body.replace(shown, stands_for)
    return command, json.loads(body)


def _shape_differences(shown: object, built: object, where: str = "") -> list[str]:
    """Where the README's record has other keys than the API builds (elided parts, "…", are open)."""
    if isinstance(shown, dict):
        if not isinstance(built, dict):
            return [f"{where}: the API gives {type(built).__name__}"]
        if "…" in shown:
            return []
        wrong = [f"{where}: keys {sorted(shown)} != {sorted(built)}"] if set(shown) != set(built) else []
        return wrong + [d for k in shown.keys() & built.keys() for d in _shape_differences(shown[k], built[k], f"{where}.{k}")]
    if isinstance(shown, list) and shown and isinstance(shown[0], dict):
        return _shape_differences(shown[0], built[0] if isinstance(built, list) and built else None, f"{where}[0]")
    return []


def test_the_forensics_record_has_the_shape_the_readme_shows() -> None:
    command, shown = _forensics_example()
    assert command.endswith(f"/api/v1/forensics/{shown['decision_id']}")
    checks = [{"name": name, "passed": True, "value": 0.1, "limit": 0.2, "max_quantity": None}
              for name in shown["audit_trail"]["risk_checks_passed"]]
    explanations = shown["explanations"]
    top = [{"feature": f, "value": 0.0, "shap": v} for f, v in explanations["shap_values"].items() if f != "…"]
    decision = {
        "decision_id": UUID(shown["decision_id"]), "symbol": shown["symbol"],
        "decided_at": datetime.fromisoformat(shown["timestamp"]), "action": shown["action"],
        "quantity": shown["quantity"], "confidence": shown["confidence"],
        "regime_probs": {"bull": 0.66, "bear": 0.30, "sideways": 0.04},
        "strategy_weights": {"bull": 0.66}, "risk_checks": checks, "correlation_id": "1-0", "log_position": 154,
        "fill": None,
    }
    record = {
        "model_version": shown["audit_trail"]["model_version"], "expected_value": explanations["expected_value"],
        "model_output": explanations["model_output"], "shap_values": {t["feature"]: t["shap"] for t in top},
        "top_features": top, "regime_reasoning": "", "strategy_selection": "",
        "computed_at": datetime.fromisoformat(shown["timestamp"]),
        "fill": {"price": 166.8116, "quantity": 2399.8732, "side": "SELL", "position_after": -1199.2216},
    }
    built = orjson.loads(orjson.dumps(forensics_body(decision, record), default=str))
    assert _shape_differences(shown, built) == []
    assert built["timestamp"] == shown["timestamp"] and built["decision_id"] == shown["decision_id"]
    assert built["audit_trail"]["risk_checks_passed"] == shown["audit_trail"]["risk_checks_passed"]
    assert built["explanations"]["risk_reasoning"] == explanations["risk_reasoning"]
    # The example's probabilities are shown rounded to the percent: its entropy, to about 0.01.
    assert abs(built["explanations"]["regime_entropy_normalised"] - explanations["regime_entropy_normalised"]) < 0.01


def test_the_forensics_sentences_are_the_ones_forensics_writes() -> None:
    _, shown = _forensics_example()
    reasoning, selection = shown["explanations"]["regime_reasoning"], shown["explanations"]["strategy_selection"]
    shares = dict(re.findall(r"(\w+) (\d+)%", reasoning.split("(")[0]))
    entropy = float(re.search(r"entropy ([0-9.]+) nats", reasoning).group(1))
    assert regime_reasoning({r: int(p) / 100 for r, p in shares.items()}, entropy) == reasoning

    parts = re.findall(r"(\w+) specialist weight ([0-9.]+) \(margin ([-+0-9.]+)\)", selection)
    score, p_up = re.search(r"blended score ([-+0-9.]+) gives P\(up\) ([0-9.]+)", selection).groups()
    top = [{"feature": f, "shap": float(v)} for f, v in re.findall(r"(\w+) \(([-+0-9.]+)\)", selection.split(": ")[-1])]
    decision = DecisionToExplain(
        decision_id=shown["decision_id"], model_version="", features=[],
        strategy_weights={r: float(w) for r, w, _ in parts}, regime_probs={},
        regime_entropy=entropy, specialist_margins={r: float(m) for r, _, m in parts},
        score=float(score), probability_up=float(p_up), action=shown["action"], quantity=shown["quantity"])
    assert len(parts) == 3 and len(top) == 3
    assert strategy_selection(decision, top) == selection


def test_every_route_the_readme_lists_is_served() -> None:
    app = create_app(ApiConfig("postgresql://unused@127.0.0.1:1/unused", ApiTokens({})))
    # A WebSocket route is opened by a GET (the upgrade).
    served = {(method, route.path) for route in app.routes for method in getattr(route, "methods", None) or ["GET"]}
    listed = [tuple(r.split(" ", 1)) for row in _table_rows(SECTIONS["The API"])
              for r in re.findall(r"`((?:GET|POST) [^`?]+)", row[0])]
    assert len(listed) == 14
    assert [r for r in listed if r not in served] == []


def test_the_envelope_shapes_in_its_docstring_are_what_the_relay_builds_and_the_workers_read() -> None:
    doc = backbone.envelope.__doc__ or ""
    written = doc.split("Envelope, schema version 2 (what the relay writes)::", 1)[1].split("Encode once")[0]
    read = doc.split("in the shape of schema version 1::", 1)[1].split("(``schema_version``")[0]
    state = {"symbol": "GOOG", "timestamp_ns": 1_795_000_000_000_000_000, "correlation_id": "1-0",
             "previous": "bull", "current": "bear", "model_version": "m"}
    flat = [b"42-0", str(UUID(int=1)).encode(), b"7", b"Regime.Probabilities.Changed", orjson.dumps(state)]
    record = backbone.envelope.RecordBuilder("glassbox:shard-0", lambda v: [], 100, 10_000).build(flat)[0]
    built = orjson.loads(record.value)[0]
    optional = {"feature_names", "wrapped"}  # a decision's names; transcoder-wrapped values
    assert set(re.findall(r'"(\w+)": ', written)) - optional == set(built)
    shown = set(re.findall(r'"(\w+)": ', read))
    assert shown - {"trading_decision"} == set(backbone.envelope.read_envelope(built))  # a decision: instead of payload


# -- the design document ----------------------------------------------------------------------------------------


def test_code_cites_sections_of_the_design_document_that_exist() -> None:
    sections = set(re.findall(r"^## (.+)$", DESIGN, flags=re.M))
    cited = []
    for room in (*PRODUCT, "tests"):
        for path in (p for p in (ROOT / room).rglob("*.py") if p != Path(__file__)):
            text = " ".join(path.read_text().split())
            assert "DESIGN.md" not in text and "/shared/" not in text, f"{path}: cite docs/design.md"
            cited += re.findall(r'docs/design\.md(?:,\s*|\s*\(\s*"?)([A-Z][\w ]+?)"?\)', text)
    assert len(cited) >= 5
    assert sorted({c for c in cited if c not in sections}) == []
    assert "docs/design.md" in README


# -- glassbox backtest, replay ---------------------------------------------------------------------------------


@pytest.fixture
def glassbox_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {**os.environ, "GLASSBOX_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url,
            "GLASSBOX_LOG_LEVEL": "WARNING"}


def _run(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "glassbox"
    return subprocess.run([str(GLASSBOX), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _pattern(line: str, volatile: list[tuple[str, str]]) -> str:
    """The README line as a regex, with the parts that change from run to run (ids, timings) opened up."""
    pattern = re.escape(line)
    for shown, stands_for in volatile:
        assert re.escape(shown) in pattern, (shown, line)
        pattern = pattern.replace(re.escape(shown), stands_for)
    return pattern


def test_the_readme_backtest_prints_what_the_readme_shows(glassbox_env, tmp_path) -> None:
    command, *shown = _block_starting(SECTIONS["Backtesting"], "$ glassbox backtest").splitlines()
    done = _run(command, glassbox_env, tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines() if line]
    run_id = re.search(r"^backtest (\w+):", shown[0]).group(1)
    timing = re.search(r"in (.+ real time\))", shown[1]).group(1)
    patterns = [_pattern(shown[0], [(run_id, "[0-9a-f]{12}")]),
                _pattern(shown[1], [(timing, rf"{NUMBER} s \({NUMBER} events/s, {NUMBER}× real time\)")]),
                *(re.escape(line) for line in shown[2:])]
    assert len(printed) == len(patterns), done.stdout
    for pattern, line in zip(patterns, printed):
        assert re.fullmatch(pattern, line), f"README: {pattern}\nprinted: {line}"
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.html").exists()


def test_the_strategy_example_runs_in_a_backtest_as_a_user_runs_it(glassbox_env, tmp_path) -> None:
    (tmp_path / "my_strategies.py").write_text(strategy_example_source())
    env = {**glassbox_env, "PYTHONPATH": str(tmp_path)}
    command = re.search(r"``(glassbox backtest --strategy [\w.]+:Momentum)``", aggregates.strategies.__doc__).group(1)
    command = command.replace("mypackage.module", "my_strategies")
    done = _run(f"{command} --source bundled:GOOG --from 2006-01-01 --to 2009-12-31 --out out", env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["parameters"]["strategy"] == {"name": "momentum"}
    assert report["metrics"]["trades"] > 3
    assert all(t["size"] == int(t["size"]) != 0 for t in report["trades"])


def test_glassbox_replay_aggregates_prints_the_line_the_readme_shows(redis_url, namespace, store, tmp_path) -> None:
    shown = _block_starting(SECTIONS["Replay"], "$ glassbox replay aggregates").splitlines()[1]
    with redis.Redis.from_url(redis_url) as client:  # what `glassbox up` records of a system's layout
        SystemKeys(namespace).record_shards(client, 1)
    env = {**os.environ, "GLASSBOX_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url,
           "GLASSBOX_NAMESPACE": namespace, "GLASSBOX_LOG_LEVEL": "WARNING"}
    done = _run("glassbox replay aggregates", env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout.splitlines()[-1]  # the line a terminal keeps: the progress before it ends in "\r"
    pieces = re.split(NUMBER, shown.split(": ", 1)[1])  # the numbers are this store's
    pattern = re.escape(f"{store}: ") + NUMBER.join(re.escape(piece) for piece in pieces)
    assert re.fullmatch(pattern, printed), f"README: {shown}\nprinted: {printed}"


def test_glassbox_replay_projections_prints_the_lines_the_readme_shows() -> None:
    # The rebuild itself is proven in tests/actors/system/test_rebuild.py; this checks the verdict's wording.
    shown = _block_starting(SECTIONS["Replay"], "$ glassbox replay projections").splitlines()[1:]
    events, rate = (float(n.replace(",", "")) for n in
                    re.search(rf"projected ({NUMBER}) events in {NUMBER} s \(({NUMBER}) events/s\)", shown[0]).groups())
    tables = {m[0]: (int(m[1].replace(",", "")), int(m[2].replace(",", "")), m[3]) for m in
              (re.fullmatch(rf" +(\w+) +({NUMBER}) rows before, +({NUMBER}) after: identical \(md5 (\w+)\)", line).groups()
               for line in shown[1:])}
    assert list(tables) == list(REBUILT_TABLES)
    report = rebuild.RebuildReport(
        before={t: (before, md5 + "0" * 20) for t, (before, _, md5) in tables.items()},
        after={t: (after, md5 + "0" * 20) for t, (_, after, md5) in tables.items()},
        events=int(events), seconds=events / rate)
    assert report.lines() == shown
