"""The argument parser of the plugin's ``python -m`` commands (data tools, benchmark)."""
import argparse


def command_parser(module_name: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of a command module: its docstring is the help text."""
    return argparse.ArgumentParser(prog=f'python -m {module_name}', description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
