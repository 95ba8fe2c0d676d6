"""Column layout of the placement table shared by every compositing kernel.

One ``int64`` row per sample, so a batch's parameters travel to the device in
one copy. Kept in its own dependency-free module so the engine, the CPU kernel,
the CUDA kernel and the reference all agree on it.
"""

BG = 0  #: index of the background image
OFFSET = 1  #: start of the resized foreground in the flat RGBA atlas (bytes)
X = 2  #: column of the foreground's top-left pixel in the output (< 0 or x + w > W: cut by the border)
Y = 3  #: row of the foreground's top-left pixel in the output (< 0 or y + h > H: cut by the border)
H = 4  #: height of the resized foreground, pixels
W = 5  #: width of the resized foreground, pixels
FLIP = 6  #: 1 to mirror the foreground horizontally, else 0
DEPTH = 7  #: the foreground plane's depth as float16 bits (uint16 value)
N_COLUMNS = 8

#: several objects per image: the object's instance id (index in its sample + 1)
INSTANCE = 8
N_OBJECT_COLUMNS = 9


def visible_window(
    x: int, y: int, h: int, w: int, height: int, width: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The part of an ``h × w`` foreground at ``(x, y)`` inside a ``height × width``
    output: ``(rows, cols)`` slices of the output and the same pixels' slices of
    the foreground (a placement may reach beyond the border: ``--truncation``)."""
    r0, r1 = max(y, 0), min(y + h, height)
    c0, c1 = max(x, 0), min(x + w, width)
    return (slice(r0, r1), slice(c0, c1)), (slice(r0 - y, r1 - y), slice(c0 - x, c1 - x))
