"""Server-side paging shared by the dashboard's lists (runs, gates, a run's attempts, a cell's pairs,
evidence records): the same page size and the same rule for a page number past the end."""

from __future__ import annotations

PER_PAGE = 50
MAX_PER_PAGE = 500


def clamp(total: int, page_no: int, per_page: int) -> tuple[int, int]:
    """(pages, page): there is always one page, even of nothing, and a page past the end is the last one
    (an old link into a list that shrank still shows something)."""
    pages = max(1, -(-total // per_page))
    return pages, min(page_no, pages)


def window(page_no: int, per_page: int) -> slice:
    """The page's items of a list that holds them all."""
    return slice((page_no - 1) * per_page, page_no * per_page)
