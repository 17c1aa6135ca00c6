# Copyright (c) mmelastic contributors. All rights reserved.
"""Every tool's ``--help`` shows its docstring, examples as written."""
import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _data_fixtures import REPO_ROOT, load_tool  # noqa: E402

from mmelastic.utils.runner_tool import docstring_parser  # noqa: E402
# tool -> the function that parses its command line
TOOLS = {
    'tools/train.py': 'parse_args',
    'tools/test.py': 'parse_args',
    'tools/demo.py': 'parse_args',
    'tools/analysis/benchmark.py': 'parse_args',
    'tools/analysis/compare_results.py': 'main',
    'tools/analysis/get_flops.py': 'parse_args',
    'tools/analysis/scale_policy.py': 'parse_args',
    'tools/analysis/scale_stress_test.py': 'parse_args',
    'tools/deployment/pytorch2onnx.py': 'parse_args',
    'tools/model_converters/elastic_to_mmelastic.py': 'main',
}


def docstring_source(path):
    """The docstring as written in the file (escapes not interpreted)."""
    source = (REPO_ROOT / path).read_text()
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.Expr), f'{path} has no module docstring'
    literal = ast.get_source_segment(source, node)
    return literal[literal.index('"""') + 3:literal.rindex('"""')]


def test_docstring_parser_keeps_the_layout():
    doc = ('\nDo one thing, described\n    over two lines.\n\nExamples:\n'
           '    python tool.py a \\\n        --b c\n')
    parser = docstring_parser(doc, prog='tool.py')
    assert parser.description == 'Do one thing, described over two lines.'
    text = parser.format_help()
    assert '    python tool.py a \\\n        --b c\n' in text
    assert docstring_parser('One line only.').epilog is None


@pytest.mark.parametrize('path', sorted(TOOLS))
def test_tool_help_shows_its_docstring(path, capsys):
    tool = load_tool(path)
    # A plain (not raw) docstring would have joined the lines that end in
    # a backslash, and --help would show example commands on one line.
    assert tool.__doc__.strip() == docstring_source(path).strip(), \
        f'{path}: give the docstring an r prefix'
    with pytest.raises(SystemExit) as exit_info:
        getattr(tool, TOOLS[path])(['--help'])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    summary, _, rest = tool.__doc__.strip('\n').partition('\n\n')
    assert ' '.join(summary.split()) in ' '.join(shown.split())
    for line in rest.splitlines():
        assert line.rstrip() in shown, f'{path} --help lacks {line!r}'
