"""The `edgedistill` command: thin click wrappers, one subcommand per stage, each calling one library
function. No logic lives here beyond turning options into a settings dataclass."""

from __future__ import annotations

import functools
import sys

import click

from edgedistill import __version__
from edgedistill.errors import EdgeDistillError


def friendly_errors(fn):
    """Print EdgeDistillError as 'error: ...' with a non-zero exit instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeDistillError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; completed output is kept, rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgedistill")
def main():
    """Distil a teacher LM into a small student, export it for edge runtimes, and benchmark it.

    \b
    Stages:
      generate   teacher answers your prompts -> synthetic training data
      distill    fine-tune a student on it (sequence-level or logit KD)
      export     ONNX / onnxruntime-genai / GGUF artifacts, each verified
      bench      latency and memory per artifact and device profile
      eval       task quality and retention against the teacher
      run        all of the above from one recipe YAML

    \b
    Example:
      edgedistill run examples/quickstart.yaml
    """


# --- stage commands -------------------------------------------------------------------------------
# Each stage module below registers its commands on `main`; keep them thin.

# [generate]

# [distill]

# [export]

# [targets/bench]

# [eval/import-gguf/run]


if __name__ == "__main__":
    main()
