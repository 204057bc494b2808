"""nbgrader configuration of the course (nbgrader 0.9.6): where exercises live, how they are graded.

Layout (every path relative to this file's folder, the course root):
    solutions/<exercise>/            source: solutions + hidden tests (instructors only)
    notebooks/<exercise>/            release: what `nbgrader generate_assignment` writes for learners
    grading/submitted/<student>/<exercise>/   submissions to grade      (git-ignored)
    grading/autograded/, grading/feedback/, grading/gradebook.db       (git-ignored)

Run nbgrader from this folder (it reads ./nbgrader_config.py); docs/instructor-guide.md has the
commands. The root is this file's folder, so a copy of the course (tests do that) grades in place.
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821 - traitlets injects get_config into config files

_ROOT = os.path.dirname(os.path.abspath(__file__))
_GRADING = "grading"  # one git-ignored folder for everything grading produces
os.makedirs(os.path.join(_ROOT, _GRADING), exist_ok=True)  # sqlite does not create the folder

c.CourseDirectory.course_id = "vllm-1.6-model-loading"
c.CourseDirectory.root = _ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# These are path segments under the root ({nbgrader_step}/{student_id}/{assignment_id}).
c.CourseDirectory.submitted_directory = os.path.join(_GRADING, "submitted")
c.CourseDirectory.autograded_directory = os.path.join(_GRADING, "autograded")
c.CourseDirectory.feedback_directory = os.path.join(_GRADING, "feedback")
c.CourseDirectory.solution_directory = os.path.join(_GRADING, "solution")
c.CourseDirectory.source_with_tests_directory = os.path.join(_GRADING, "source_with_tests")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_ROOT, _GRADING, "gradebook.db")

# Kernels: a vLLM load with a first `import vllm` takes ~30 s on 2 busy cores, and exercise 3's
# measuring cell (two models, warm-up and repeats) took over 300 s on a heavily shared machine;
# 600 s per cell leaves room, and an endless loop still ends (the cell is interrupted, marked
# CellTimeoutError, and the rest of the notebook is graded). Same limit in autograde and validate.
c.Execute.timeout = 600
c.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",  # no sqlite history file per kernel
    "--InteractiveShell.xmode=Minimal",  # tracebacks without source lines: hidden tests stay hidden
]

# Feedback: grades, outputs and messages, but never the hidden tests' source.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]

# Answer cells start with this stub in the release (nbgrader's default, stated for clarity).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
