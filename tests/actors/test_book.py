"""The portfolio book's view of the other desks (pure code)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.book import DeskFigures, PortfolioBook
from aggregates.risk import OthersView, RemoteShard
from edge.shared_book import ShardBook

figures = st.builds(DeskFigures, st.floats(allow_nan=False), st.floats(allow_nan=False),
                    st.floats(allow_nan=False))


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), figures), max_size=30))
def test_others_sums_every_other_desk_and_equals_a_constructed_view(publications) -> None:
    book = PortfolioBook(1e6)
    latest: dict[str, DeskFigures] = {}
    for symbol, published in publications:
        book.publish(symbol, published)
        latest[symbol] = published
    for symbol in ("A", "B", "C", "D"):
        view = book.others(symbol)
        own = latest.get(symbol, DeskFigures())
        expected = OthersView(1e6, book._pnl - own.pnl, book._day_pnl - own.day_pnl,
                              max(book._exposure - own.exposure, 0.0))
        assert repr(view) == repr(expected)  # every float told apart, NaN (inf - inf) included
        assert list(vars(view)) == list(vars(expected))
    if not publications:
        assert book.others("A") == OthersView(1e6)


def test_a_desk_sees_the_others_latest_figures_not_its_own() -> None:
    book = PortfolioBook(1e6)
    book.publish("A", DeskFigures(10.0, 1.0, 5.0))
    book.publish("B", DeskFigures(20.0, 2.0, 7.0))
    book.publish("B", DeskFigures(30.0, -4.0, 9.0))
    assert book.others("A") == OthersView(1e6, 30.0, -4.0, 9.0)
    assert book.others("B") == OthersView(1e6, 10.0, 1.0, 5.0)
    assert book.others("C") == OthersView(1e6, 40.0, -3.0, 14.0)


def test_other_shards_add_to_the_sums_and_count_at_their_share() -> None:
    book = PortfolioBook(1e6, share=0.25)
    book.publish("A", DeskFigures(10.0, 1.0, 5.0))
    assert book.others("A").unseen_share == 0.75  # shards not heard from count as fully invested
    book.set_remote({"shard-1": ShardBook(100.0, -20.0, 300.0, 0.5), "shard-2": ShardBook(-50.0, 5.0, 40.0, 0.25)})
    view = book.others("B")
    assert (view.pnl, view.day_pnl, view.gross_exposure) == (60.0, -14.0, 345.0)
    assert view.remote == (RemoteShard(300.0, 0.5), RemoteShard(40.0, 0.25))
    assert view.remote_exposure == 340.0 and view.unseen_share == 0.0
    assert book.own_totals(7) == ShardBook(10.0, 1.0, 5.0, 0.25, 7)  # what it publishes: its own desks only
    assert book.equity() == 1e6 + 60.0
