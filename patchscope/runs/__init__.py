"""The run store, reports and reproduce lines: what was run, with which settings, and what it measured.

Importing this package does not import torch, so ``patchscope runs`` starts at once.

>>> from patchscope.runs.store import RunStore
>>> from patchscope.runs.report import Section, render_report
>>> from patchscope.runs.reproduce import command_line
"""
