"""Paired PSNR differences: is method A ahead of method B by more than the image-to-image noise?

A mean PSNR over a set hides how the difference between two methods is spread over the images:
+0.05 dB may be every image a little better or one image much better. For each ``A:B`` pair and
every (set, scale) both methods were evaluated at, this takes PSNR(A) - PSNR(B) image by image
(the same images, the same protocol) and reports n, the mean difference with the half-width of
its 95% confidence interval (Student's t with n - 1 degrees of freedom times sd / sqrt(n)), and
on how many images A is higher (and tied). ``basicsr benchmark --pairs A:B ...`` adds the section
to ``compare.md`` and writes ``pairs.csv``; afterwards, from a written ``per_image.csv``::

    python -m gaussiansr_plugin.benchmark.pairs results/compare --pairs GaussianSR:LIIF LIIF:Bicubic [--write]

prints the same section (``--write``: also ``pairs.csv`` beside the CSV). Method names are those
of ``--model`` and ``Bicubic``.
"""
import csv
import math
import statistics
import sys
from os import path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from scipy import stats

from gaussiansr_plugin.benchmark.report import PAIR_COLUMNS, PER_IMAGE_COLUMNS, csv_text
from gaussiansr_plugin.utils.command_line import command_parser
from gaussiansr_plugin.utils.file_io import atomic_write

Pair = Tuple[str, str]
NEEDED_COLUMNS = ('method', 'set', 'scale', 'image', 'psnr')


def parse_pairs(texts: Sequence[str], names: Sequence[str]) -> List[Pair]:
    """``A:B`` texts -> (A, B) pairs of known method names, in order, without repeats.

    A name may itself hold ':'; the text is split at the ':' that leaves two known names.

    Raises:
        ValueError: Malformed text, an unknown name or a method paired with itself, naming the
            pair and listing the method names.
    """
    pairs = []
    for text in texts:
        splits = [(text[:i].strip(), text[i + 1:].strip()) for i, char in enumerate(text) if char == ':']
        known = [pair for pair in splits if pair[0] in names and pair[1] in names]
        if not known:
            unknown = [n for n in splits[0] if n not in names] if len(splits) == 1 and all(splits[0]) else []
            what = (f'{" and ".join(map(repr, unknown))} {"is" if len(unknown) == 1 else "are"} not a method name'
                    if unknown else 'expected A:B with two method names')
            raise ValueError(f'--pairs {text!r}: {what} (methods: {", ".join(names)})')
        if known[0][0] == known[0][1]:
            raise ValueError(f'--pairs {text!r}: a method compared with itself')
        pairs.append(known[0])
    return list(dict.fromkeys(pairs))


def _as_stored(value) -> float:
    """The PSNR at the 6 decimals ``per_image.csv`` stores: the run and the post-hoc command, which
    reads that file, then count the same ties and print the same digits."""
    return float(f'{float(value):.6f}')


def pair_rows(per_image: Sequence[dict], pairs: Sequence[Pair]) -> List[dict]:
    """One row (``PAIR_COLUMNS``) per pair and (set, scale) at which both methods have images.

    Args:
        per_image (list[dict]): Rows with method, set, scale, image and psnr (number or text).

    Raises:
        ValueError: A (method, set, scale, image) twice.
    """
    psnr: Dict[Tuple[str, str, str, str], float] = {}
    for row in per_image:
        key = (row['method'], row['set'], str(row['scale']), row['image'])
        if key in psnr:
            raise ValueError('per-image results: method {}, set {}, x{}, image {} appear twice'.format(*key))
        psnr[key] = _as_stored(row['psnr'])
    groups = list(dict.fromkeys((k[1], k[2]) for k in psnr))
    rows = []
    for a, b in pairs:
        for set_name, scale in groups:
            images = [k[3] for k in psnr if k[:3] == (a, set_name, scale) and (b, set_name, scale, k[3]) in psnr]
            if not images:
                continue
            diffs = [psnr[(a, set_name, scale, i)] - psnr[(b, set_name, scale, i)] for i in images]
            n = len(diffs)
            ci95 = (stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)) if n > 1 else None
            rows.append(dict(method_a=a, method_b=b, set=set_name, scale=scale, images=n,
                             psnr_diff=statistics.fmean(diffs), ci95=None if ci95 is None else float(ci95),
                             a_higher=sum(d > 0 for d in diffs), ties=sum(d == 0 for d in diffs)))
    return rows


def _cell(row: Optional[dict]) -> str:
    if row is None:
        return '—'
    spread = '' if row['ci95'] is None else f' ± {row["ci95"]:.3f}'
    tied = f', {row["ties"]} tied' if row['ties'] else ''
    return f'{row["psnr_diff"]:+.3f}{spread} ({row["a_higher"]}/{row["images"]}{tied})'


def render_pairs(pairs: Sequence[Pair], rows: Sequence[dict]) -> str:
    """The markdown section: a row per (set, scale), a column per pair, then how to read it."""
    by_key = {(r['method_a'], r['method_b'], r['set'], r['scale']): r for r in rows}
    lines = ['Paired PSNR differences A − B (dB): mean ± 95% interval (k/n: A higher on k of the n images)', '',
             '| | ' + ' | '.join(f'{a} − {b}' for a, b in pairs) + ' |', '|---|' + '---:|' * len(pairs)]
    for set_name, scale in dict.fromkeys((r['set'], r['scale']) for r in rows):
        cells = [_cell(by_key.get((a, b, set_name, scale))) for a, b in pairs]
        lines.append(f'| {set_name} x{scale} | ' + ' | '.join(cells) + ' |')
    if not rows:
        lines.append('| (no set and scale at which both methods of a pair were evaluated) |' + ' |' * len(pairs))
    lines += ['', '- Image by image over the images both methods were evaluated on (the set\'s protocol); '
              'interval: Student\'s t(n − 1) × sd / √n of the differences (none for n = 1). An interval that '
              'contains 0: the mean difference is within the image-to-image spread. Tied: equal PSNR to the 6 '
              'decimals of per_image.csv.']
    return '\n'.join(lines) + '\n'


def read_per_image(file_path: str) -> List[dict]:
    """The rows of a ``per_image.csv`` written by ``basicsr benchmark``.

    Raises:
        FileNotFoundError, ValueError: Missing file, columns or numbers, naming the file.
    """
    if not osp.isfile(file_path):
        raise FileNotFoundError(f'{file_path} does not exist (expected per_image.csv of basicsr benchmark)')
    with open(file_path, newline='') as f:
        reader = csv.DictReader(f)
        missing = [c for c in NEEDED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f'{file_path}: missing column(s) {", ".join(missing)} (expected '
                             f'{",".join(PER_IMAGE_COLUMNS)})')
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        try:
            row['psnr'] = float(row['psnr'])
        except (TypeError, ValueError):
            raise ValueError(f'{file_path}, line {line}: psnr {row["psnr"]!r} is not a number') from None
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    """Post-hoc entry point: the section from an existing ``per_image.csv``; returns the exit status."""
    parser = command_parser('gaussiansr_plugin.benchmark.pairs', __doc__)
    parser.add_argument('results', metavar='OUT_DIR_or_per_image.csv', help='a --out folder or its per_image.csv')
    parser.add_argument('--pairs', nargs='+', required=True, metavar='A:B', help='method pairs, A − B')
    parser.add_argument('--write', action='store_true', help='also write pairs.csv beside per_image.csv')
    args = parser.parse_args(argv)
    file_path = osp.join(args.results, 'per_image.csv') if osp.isdir(args.results) else args.results
    try:
        per_image = read_per_image(file_path)
        pairs = parse_pairs(args.pairs, list(dict.fromkeys(r['method'] for r in per_image)))
        rows = pair_rows(per_image, pairs)
    except (FileNotFoundError, ValueError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    print(render_pairs(pairs, rows), end='')
    if args.write:
        out_path = osp.join(osp.dirname(file_path), 'pairs.csv')
        atomic_write(csv_text(rows, PAIR_COLUMNS).encode(), out_path)
        print(f'Written to {out_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
