"""Multipart arithmetic: part size, part numbers, part-number lists from a query."""

from __future__ import annotations

import math

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
MAX_BATCH = 1_000  # part numbers signed by one /batch request


class PartError(ValueError):
    pass


def part_size(size: int) -> int:
    """max(5 MiB, ceil(size / 10000)): every file up to S3's limit fits in 10,000 parts."""
    return max(MIN_PART_SIZE, math.ceil(size / MAX_PARTS))


def part_count(size: int, size_of_part: int) -> int:
    return max(1, math.ceil(size / size_of_part))


def parse_part_number(raw: str | int) -> int:
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise PartError("the part number must be an integer between 1 and 10000") from None
    if not 1 <= number <= MAX_PARTS:
        raise PartError("the part number must be an integer between 1 and 10000")
    return number


def parse_part_numbers(raw: str | None) -> list[int]:
    """``"1,2,5"`` → ``[1, 2, 5]`` (order kept, duplicates dropped)."""
    if raw is None or not raw.strip():
        raise PartError("partNumbers must be a comma-separated list, e.g. ?partNumbers=1,2,3")
    numbers: list[int] = []
    seen: set[int] = set()
    for item in raw.split(","):
        number = parse_part_number(item)
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    if len(numbers) > MAX_BATCH:
        raise PartError(f"at most {MAX_BATCH} part numbers per batch")
    return numbers
