"""Fossil delta encoder (the format of fossil-scm's ``delta.c``, which centrifuge-js and
centrifuge-python decode for subscriptions with ``delta: "fossil"``).

PyPI has no maintained encoder (``fossil-delta`` and ``python-fossil-delta`` are
C extensions last released in 2017 and 2018), so this is the algorithm in pure Python:
a rolling hash of the source's 16-byte blocks, and for each position of the target the
longest match among the blocks with that hash; copies (``N@OFFSET,``) where they are
shorter than the bytes they stand for, inserts (``N:bytes``) elsewhere, then a checksum
(``N;``). Integers are written in Fossil's base-64 digits.
"""

from __future__ import annotations

NHASH = 16
_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_SEARCH_LIMIT = 250  # blocks tried per position (as delta.c)


def _int(v: int) -> bytes:
    if v == 0:
        return b"0"
    out = bytearray()
    while v > 0:
        out.append(_DIGITS[v & 0x3F])
        v >>= 6
    out.reverse()
    return bytes(out)


def _digit_count(v: int) -> int:
    i, x = 1, 64
    while v >= x:
        i += 1
        x <<= 6
    return i


def checksum(data: bytes) -> int:
    """delta.c's 32-bit checksum: the sum of big-endian 32-bit words, the tail shifted in."""
    n = len(data) - len(data) % 4
    total = 0
    for z in range(0, n, 4):
        total += int.from_bytes(data[z : z + 4], "big")
    rest = data[n:]
    for index, byte in enumerate(rest):
        total += byte << (24 - 8 * index)
    return total & 0xFFFFFFFF


def _hash(block: bytes | memoryview) -> tuple[int, int]:
    a = b = 0
    for byte in block:
        a = (a + byte) & 0xFFFF
        b = (b + a) & 0xFFFF
    return a, b


def create_delta(source: bytes, target: bytes) -> bytes:
    """A delta that turns ``source`` into ``target`` (``apply_delta(source, d) == target``)."""
    len_src, len_out = len(source), len(target)
    out = bytearray(_int(len_out) + b"\n")
    if len_src <= NHASH:
        out += _int(len_out) + b":" + target + _int(checksum(target)) + b";"
        return bytes(out)

    n_hash = len_src // NHASH
    collide = [-1] * n_hash
    landmark = [-1] * n_hash
    for i in range(0, len_src - NHASH, NHASH):
        a, b = _hash(source[i : i + NHASH])
        hv = (a | (b << 16)) % n_hash
        collide[i // NHASH] = landmark[hv]
        landmark[hv] = i // NHASH

    base = 0
    while base + NHASH < len_out:
        a, b = _hash(target[base : base + NHASH])
        window = list(target[base : base + NHASH])
        wi = 0
        i = 0
        best_cnt = best_ofst = best_litsz = 0
        while True:
            hv = (a | (b << 16)) % n_hash
            block = landmark[hv]
            limit = _SEARCH_LIMIT
            while block >= 0 and limit > 0:
                limit -= 1
                src = block * NHASH
                y = base + i
                limit_x = len_src if len_src - src <= len_out - y else src + len_out - y
                x = src
                while x < limit_x and source[x] == target[y]:
                    x += 1
                    y += 1
                j = x - src - 1
                k = 1
                while k < src and k <= i and source[src - k] == target[base + i - k]:
                    k += 1
                k -= 1
                ofst = src - k
                cnt = j + k + 1
                litsz = i - k
                size = _digit_count(i - k) + _digit_count(cnt) + _digit_count(ofst) + 3
                if cnt >= size and cnt > best_cnt:
                    best_cnt, best_ofst, best_litsz = cnt, ofst, litsz
                block = collide[block]
            if best_cnt > 0:
                if best_litsz > 0:
                    out += _int(best_litsz) + b":" + target[base : base + best_litsz]
                    base += best_litsz
                base += best_cnt
                out += _int(best_cnt) + b"@" + _int(best_ofst) + b","
                break
            if base + i + NHASH >= len_out:
                out += _int(len_out - base) + b":" + target[base:]
                base = len_out
                break
            # roll the hash one byte on
            old = window[wi]
            new = target[base + i + NHASH]
            window[wi] = new
            wi = (wi + 1) & (NHASH - 1)
            a = (a - old + new) & 0xFFFF
            b = (b - NHASH * old + a) & 0xFFFF
            i += 1
    if base < len_out:
        out += _int(len_out - base) + b":" + target[base:]
    out += _int(checksum(target)) + b";"
    return bytes(out)
