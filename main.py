"""``python main.py <command> ...``: the same CLI as the ``zorrent`` console script."""
from ctl.app import main

if __name__ == "__main__":
    main()
