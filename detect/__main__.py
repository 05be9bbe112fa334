"""`python -m detect ...`, which is also what `torchrun -m detect train ...` runs."""

from detect.cli import main

if __name__ == "__main__":
    main()
