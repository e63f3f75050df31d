"""course_lib: the library built up by the Coarse-to-Fine Video Moment Search course.

Import submodules explicitly (``from course_lib import env``); importing the package
itself does no work and loads no heavy dependency.
"""

__version__ = "0.1.0"
