"""CLI options come from the settings dataclasses: every command is walked and each option that maps to
a settings field must carry the field's default and help (cli_options.setting), never a hand-written copy."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from edgedistill import cli
from edgedistill.bench.harness import BenchConfig
from edgedistill.cli_options import SettingsField, cli_help, field_default, field_of, setting
from edgedistill.distill.config import DistillConfig
from edgedistill.eval.evaluate import EvalConfig
from edgedistill.export.formats import ExportOptions
from edgedistill.export.run import ExportConfig
from edgedistill.generate import GenerateConfig
from edgedistill.gguf_import.command import ImportGGUFConfig
from edgedistill.prune.config import PruneConfig
from edgedistill.teachers.base import SamplingConfig, TeacherConfig

# The settings classes behind each command. A new command must be listed (the walk below fails
# otherwise); () for commands whose options have no settings dataclass.
COMMAND_SETTINGS: dict[str, tuple[type, ...]] = {
    "generate": (GenerateConfig, TeacherConfig, SamplingConfig),
    "distill": (DistillConfig,),
    "prune": (PruneConfig,),
    "export": (ExportConfig, ExportOptions),
    "inspect": (),
    "targets list": (), "targets show": (), "targets probe": (),
    "plan": (),
    "bench run": (BenchConfig,),
    "bench compare": (),
    "import-gguf": (ImportGGUFConfig,),
    "eval": (EvalConfig,),
    "run": (),
}

# Options named like a field but shaped for the command line on purpose, each with its reason.
CLI_SHAPED = {
    ("generate", "stop"): "repeatable --stop with backslash escapes, and --no-stop for []",
    ("eval", "stop"): "repeatable --stop with backslash escapes, and --no-stop for []",
}


def option_default(p: click.Option):
    """The option's declared default; click >= 8.3 says UNSET where none was given."""
    return None if p.default is getattr(click.core, "UNSET", None) else p.default


def walk(group: click.Group, prefix: str = ""):
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from walk(command, path + " ")
        else:
            yield path, command


def drift(path: str, command: click.Command, classes: tuple[type, ...]) -> list[str]:
    """What is wrong with ``command``'s options against its settings classes (empty: nothing)."""
    fields = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    problems = []
    for p in command.params:
        if not isinstance(p, click.Option) or p.name == "help":
            continue
        source: SettingsField | None = getattr(p, "settings_field", None)
        if source is None:
            spelled = {o.lstrip("-").replace("-", "_") for o in p.opts}
            clash = sorted(({p.name} | spelled) & set(fields))
            if clash and (path, p.name) not in CLI_SHAPED:
                problems.append(f"{path} {p.opts[0]}: re-declares {fields[clash[0]].__name__}.{clash[0]} by hand; "
                                "use cli_options.setting")
            continue
        f = source.field
        default = field_default(f)
        have = option_default(p)
        if p.required:
            if have is not None:
                problems.append(f"{path} {p.opts[0]}: required but has a default {have!r}")
        else:
            want = source.cli_default()
            have = tuple(have) if isinstance(have, list) else have
            if have != want:
                problems.append(f"{path} {p.opts[0]}: default {have!r}, field {source.cls.__name__}."
                                f"{f.name} says {default!r}")
        if p.help != cli_help(f):
            problems.append(f"{path} {p.opts[0]}: help differs from {source.cls.__name__}.{f.name}'s")
        if source.cls not in classes:
            problems.append(f"{path} {p.opts[0]}: from {source.cls.__name__}, not a settings class of the command")
    return problems


def test_every_command_is_listed_with_its_settings():
    assert sorted(path for path, _ in walk(cli.main)) == sorted(COMMAND_SETTINGS)


@pytest.mark.parametrize("path", sorted(COMMAND_SETTINGS))
def test_options_match_their_settings_fields(path):
    command = dict(walk(cli.main))[path]
    assert drift(path, command, COMMAND_SETTINGS[path]) == []


def test_most_settings_options_are_derived():
    """Guard against the walk passing because nothing is derived."""
    derived = [p for _, c in walk(cli.main) for p in c.params if getattr(p, "settings_field", None)]
    assert len(derived) >= 100
    assert all(p.help for p in derived)


def test_a_hand_written_copy_of_a_field_is_caught():
    @click.command()
    @click.option("--loss-chunk-tokens", type=int, default=256, show_default=True, help="Positions per chunk.")
    @setting(DistillConfig, "loss")
    def fake(loss_chunk_tokens, loss):
        pass

    problems = drift("distill", fake, (DistillConfig,))
    assert len(problems) == 1 and "--loss-chunk-tokens" in problems[0] and "by hand" in problems[0]


def test_a_derived_option_whose_default_was_changed_is_caught():
    @click.command()
    @setting(DistillConfig, "loss_chunk_tokens")
    def fake(loss_chunk_tokens):
        pass

    fake.params[0].default = 256  # as a stray edit after decoration would
    problems = drift("distill", fake, (DistillConfig,))
    assert problems and "default 256" in problems[0]


def test_setting_refuses_a_hand_written_default_or_help():
    with pytest.raises(TypeError, match="default comes from the field"):
        setting(DistillConfig, "loss_chunk_tokens", default=256)
    with pytest.raises(TypeError, match="help comes from the field"):
        setting(DistillConfig, "loss", help="Loss.")


def test_loss_chunk_tokens_defaults_to_automatic_sizing():
    """The issue's drift: the CLI said 256, the settings mean None = sized from the vocabulary."""
    option = next(p for p in cli.distill_cmd.params if p.name == "loss_chunk_tokens")
    assert option.default is None and DistillConfig.__dataclass_fields__["loss_chunk_tokens"].default is None


def test_field_types_become_option_types():
    opts = {p.name: p for p in cli.bench_run_cmd.params}
    assert opts["targets"].multiple and opts["targets"].default == ("host",)
    assert opts["prompt_lens"].default == "128" and opts["cv_threshold"].default == "10%"
    assert isinstance(opts["mode"].type, click.Choice) and list(opts["mode"].type.choices) == ["emulate", "device"]
    assert opts["verify_hashes"].is_flag and opts["verify_hashes"].default is True
    assert "--no-verify-hashes" in opts["verify_hashes"].secondary_opts
    assert opts["gen_len"].type is click.INT and opts["min_duration_s"].type is click.FLOAT
    assert field_of(BenchConfig, "gen_len").default == opts["gen_len"].default


def test_negative_flags_keep_their_spelling_and_meaning(monkeypatch):
    """--no-verify-hashes / --no-enforce-memory / ... still turn the setting off."""
    seen = {}

    def fake_bench(config):
        seen["config"] = config
        raise SystemExit(0)

    import edgedistill.bench as bench_pkg

    monkeypatch.setattr(bench_pkg, "bench", fake_bench)
    result = CliRunner().invoke(cli.main, ["bench", "a.gguf", "--no-verify-hashes", "--no-enforce-memory",
                                           "--no-static-check", "--prompt-len", "8,16", "--cv-threshold", "5%"])
    assert result.exit_code == 0, result.output
    c = seen["config"]
    assert (c.verify_hashes, c.enforce_memory, c.static_check) == (False, False, False)
    assert c.prompt_lens == [8, 16] and c.cv_threshold == pytest.approx(0.05)
    result = CliRunner().invoke(cli.main, ["bench", "a.gguf"])
    c = seen["config"]
    assert (c.verify_hashes, c.enforce_memory, c.static_check) == (True, True, True)
    assert c.prompt_lens == [128] and c.cv_threshold == pytest.approx(0.10)


@pytest.mark.parametrize("path", sorted(COMMAND_SETTINGS))
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli.main, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output
