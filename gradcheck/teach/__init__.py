"""Lessons on classic derivative bugs (``gradcheck teach``)."""
