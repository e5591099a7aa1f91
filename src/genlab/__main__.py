"""`python -m genlab`: the command line, also as the module torchrun starts
(`torchrun --nproc-per-node N -m genlab train CONFIG`)."""

from genlab.cli import main

if __name__ == "__main__":
    main()
