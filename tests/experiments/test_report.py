"""experiments.report's provenance line: every table written names its commit and command."""
import re
import subprocess
import sys

from experiments import report


def test_a_written_table_names_its_commit_command_and_wall_time(tmp_path):
    path = tmp_path / "t.md"
    report.write_markdown(str(path), "T", ["a note"], ["x"], [["1"]], seconds=90)
    text = path.read_text()
    assert text.startswith("# T\n\na note\nWritten by: commit `")
    line = text.splitlines()[3]
    assert re.fullmatch(r"Written by: commit `([0-9a-f]{12}(\+uncommitted)?|unknown)`, "
                        r"`python .+`, wall time 1\.5 min, \d{4}-\d\d-\d\d \d\d:\d\d UTC\.",
                        line), line
    assert text.endswith("| x |\n|---|\n| 1 |\n")


def test_the_commit_is_unknown_outside_a_checkout_and_marked_when_files_changed(tmp_path):
    assert report.code_commit(str(tmp_path)) == "unknown"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("1")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "c"], check=True)
    clean = report.code_commit(str(tmp_path))
    assert re.fullmatch(r"[0-9a-f]{12}", clean), clean
    (tmp_path / "f.txt").write_text("2")
    assert report.code_commit(str(tmp_path)) == clean + "+uncommitted"


def test_the_command_reads_as_a_module_run_with_its_arguments_quoted():
    module = sys.modules["__main__"].__spec__
    want_head = f"python -m {module.name}" if module and module.name else "python prog"
    assert report.command_line(["prog", "--arm=HRL-Rec, the paper's losses", "--seeds=0,1"]) \
        == want_head + " '--arm=HRL-Rec, the paper'\"'\"'s losses' --seeds=0,1"
