"""The pull request's traffic summary, from the offline render of the stack before and after a change."""

from __future__ import annotations

from tools.render import render_files, write_files
from tools.stack_run import run_stack
from tools.traffic_diff import summary


def _render(root, stack="dev", overrides=None, name="dev"):
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    write_files(root / name, render_files(run))
    return root


def test_a_canary_step_a_new_route_and_a_mirror_read_as_one_line_each(tmp_path, istio_chart_cache):
    before = _render(tmp_path / "before")
    after = _render(tmp_path / "after", overrides={
        "services.hotel.weights": {"v1": 75, "v2": 25},
        "services.carrental.matchRoutes": [{"header": "x-bee-canary", "value": "true", "version": "v2"}],
        "services.currencyexchange.versions.v2": {"tier": "json"}, "services.currencyexchange.weights": {"v1": 100, "v2": 0},
        "services.currencyexchange.mirror": {"version": "v2", "percent": 10},
    })
    text = summary(before, after)
    assert "  - hotel: v1 50% → 75%, v2 50% → 25%" in text
    assert "  - carrental: new route header x-bee-canary: true → v2" in text
    assert "  - currencyexchange: v2 added at 0%" in text and "  - currencyexchange: mirror none → v2 (10%)" in text
    assert "  - mTLS unchanged (PERMISSIVE)" in text


def test_an_unchanged_stack_says_so_in_one_line_and_mtls_changes_are_named(tmp_path, istio_chart_cache):
    before = _render(tmp_path / "before")
    same = _render(tmp_path / "same")
    assert summary(before, same).splitlines()[2] == "- **dev**: no traffic change (mTLS PERMISSIVE)"
    strict = _render(tmp_path / "strict", overrides={"security.mtlsMode": "STRICT"})
    text = summary(before, strict)
    assert "  - mTLS in bee-travels: mode PERMISSIVE → STRICT" in text and "istio-system: mode PERMISSIVE → STRICT" in text


def test_a_large_change_is_cut_short_with_a_pointer_to_the_rendered_diff(tmp_path, istio_chart_cache):
    before = _render(tmp_path / "before")
    after = _render(tmp_path / "after", overrides={f"services.{name}.fault": {"abort": {"httpStatus": 503, "percent": 5}}
                                                    for name in ("hotel", "carrental", "destination", "currencyexchange")})
    text = summary(before, after, max_lines=2)
    assert text.count("fault none → abort 503 at 5") == 2 and "… and 2 more (see the rendered diff)" in text
    assert len(text) < 2000
