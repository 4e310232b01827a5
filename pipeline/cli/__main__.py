"""``python -m pipeline.cli``: the ``oceanfields`` command."""

from pipeline.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="oceanfields")
