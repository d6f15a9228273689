"""Lessons on classic derivative bugs: a catalog of mutants of a textbook network, each with its fix,
the reason it is wrong and what gradcheck should say about it; of bugs in single operators'
backward passes checked with ``check_vjp``; and of bugs in layer kinds' backward passes (conv,
pooling, normalization, attention, RNN/LSTM, embedding) checked on a whole network
(``gradcheck teach``); and exercises: a lesson's bug in a self-contained student file that
:func:`grade_file` grades.

>>> from gradcheck.teach import LESSONS, get_lesson, run_lesson
>>> outcome = run_lesson(get_lesson("tanh-one-minus-a"))   # doctest: +SKIP
>>> outcome.caught, outcome.result.worst_param, outcome.pattern   # doctest: +SKIP
(True, 'W1', 'hidden_layer_derivative')
"""
from gradcheck.teach.catalog import (
    LAYER_LESSONS,
    LESSONS,
    NETWORK_LESSONS,
    OPERATOR_LESSONS,
    PASSES,
    AnyLesson,
    Case,
    LayerLesson,
    Lesson,
    OperatorLesson,
    get_lesson,
)
from gradcheck.teach.course import grade_class, write_course
from gradcheck.teach.exercises import EXERCISES, Exercise, get_exercise, write_exercise
from gradcheck.teach.grading import Grade, grade_file, hint
from gradcheck.teach.run import Outcome, run_lesson

__all__ = ["LESSONS", "NETWORK_LESSONS", "OPERATOR_LESSONS", "LAYER_LESSONS", "PASSES", "AnyLesson", "Case", "Lesson",
           "OperatorLesson", "LayerLesson", "get_lesson", "Outcome", "run_lesson",
           "EXERCISES", "Exercise", "get_exercise", "write_exercise", "Grade", "grade_file", "hint",
           "write_course", "grade_class"]
