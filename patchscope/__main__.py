"""`python -m patchscope ...` runs the command line (also under `torchrun`)."""

from patchscope.cli import main

if __name__ == "__main__":
    main()
