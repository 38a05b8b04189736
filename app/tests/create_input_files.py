"""``python -m app.tests.create_input_files --num_files 10 --path input_files``: the seed
README's generator command, kept working verbatim. It is ``make-inputs``, with the same options."""
import sys

from ctl.app import app


def main() -> None:
    app(["make-inputs", *sys.argv[1:]], prog_name="python -m app.tests.create_input_files")


if __name__ == "__main__":
    main()
