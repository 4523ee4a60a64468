"""Reading the suite's text inputs (list files, class maps), importable without paddle (predict.py on
OpenVINO or onnxruntime never loads it); reader.py re-exports both names.
"""
from __future__ import annotations


class ListFileError(ValueError):
    """A list file that cannot be used; the message names file:line and the fix."""


def read_text_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM removed); bytes that are not UTF-8 are an error naming
    file:line instead of silently replaced characters."""
    with open(path, "rb") as handle:
        raw_lines = handle.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            raise ListFileError(f"{path}:{number}: byte {raw[err.start:err.start + 1]!r} at column "
                                f"{err.start + 1} is not UTF-8; save the file as UTF-8") from None
    return lines
