"""Text from the catalog or the config, made inert for ``snakemake --report``.

The report's opening text and captions are reStructuredText that docutils turns
into HTML, and the page embeds that HTML and every result's metadata as JSON
inside ``<script>`` elements. A class label, an id, a column name or a config
string can therefore hold an RST directive (``raw``, ``include``), a role, a
substitution, an HTML tag or a ``</script>``. Three layers keep all of them text:

- ``rst_text`` escapes a value for RST: every ASCII punctuation character gets a
  backslash and line breaks become spaces, so no directive, role, reference,
  substitution or inline markup can start, and docutils' HTML writer then escapes
  ``<``, ``>``, ``&`` and quotes as for any text.
- ``harden_report`` switches docutils' ``raw`` directive and file insertion
  (``include``, ``csv-table :file:``, ``raw :file:``) off for the whole report,
  through a docutils config file of the workflow.
- It also makes the JSON that the HTML report embeds in ``<script>`` elements
  escape ``<``, ``>`` and ``&``, so that no string can close the script element.
"""

import importlib
import json
import os
import pkgutil
import string
import unicodedata
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_SCRIPT_SAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def rst_text(value: Any, max_length: int = 300) -> str:
    """``value`` as RST that renders as exactly its text (on one line), never as markup.

    Control and line-separator characters become spaces (a newline would let a
    directive start on the next line); values longer than ``max_length`` are cut
    with an ellipsis, so one huge catalog cell cannot swamp the report.
    """
    text = str(value)
    if len(text) > max_length:
        text = text[: max_length - 1] + "…"
    out = []
    for char in text:
        if char in _PUNCTUATION:
            out.append("\\" + char)
        elif char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def script_safe_dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` whose output can sit inside an HTML ``<script>`` element unchanged."""
    text = json.dumps(value, **kwargs)
    return "".join(_SCRIPT_SAFE.get(char, char) for char in text)


class _ScriptSafeJson:
    """Stands in for the ``json`` module in the HTML reporter: same API, script-safe ``dumps``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    dumps = staticmethod(script_safe_dumps)


def harden_report(docutils_config: str | os.PathLike) -> None:
    """Called by the workflow before any report is rendered (see the module docstring), with the
    path of its docutils config (workflow/report/docutils.conf)."""
    os.environ["DOCUTILSCONFIG"] = str(docutils_config)
    try:
        import snakemake.report.html_reporter as reporter
    except ImportError:  # another Snakemake layout: the docutils settings still apply
        return
    names = [info.name for info in pkgutil.walk_packages(reporter.__path__, reporter.__name__ + ".")]
    for module in [reporter, *map(importlib.import_module, names)]:
        if getattr(module, "json", None) is json:
            module.json = _ScriptSafeJson()
