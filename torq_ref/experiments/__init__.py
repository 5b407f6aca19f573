"""Experiments that sit above the layers they use (spec/SH.md SH-5.4, spec/ME.md ME-5.2).

They capture layer inputs with torq_ref.model and measure torq_ref.rotations on them, so neither of
those packages imports the other. ``cli.register`` adds their subcommands.
"""
