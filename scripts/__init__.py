"""Developer scripts: the shell entry points beside this file, and gen_config."""
