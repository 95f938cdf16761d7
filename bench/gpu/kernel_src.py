"""Our kernel sources as the engine hands them to MLX (`compact` in
host/engine/src/kernels/source.rs: comments and indentation stripped), for the labs."""
import pathlib

KDIR = pathlib.Path(__file__).resolve().parents[2] / "host/engine/src/kernels"


def compact(src):
    out = []
    for line in src.splitlines():
        i = line.find("//")
        line = (line if i < 0 else line[:i]).strip()
        if line:
            out.append(line)
    return "\n".join(out)


def header(*names):
    """Shared device code, joined as `header` in source.rs joins it."""
    return "\n".join(compact((KDIR / n).read_text()) for n in names) + "\n"


def qmv_shared_bytes(k):
    """Dynamic shared memory of qmv4_rows for an input of width k (qmv4_shared_bytes)."""
    return (k // 32) * 20 * 4 + (k // 64) * 4
