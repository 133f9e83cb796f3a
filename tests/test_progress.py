import io

from data.progress import Progress


def test_progress_line_rate_eta_and_throttling():
    out = io.StringIO()
    p = Progress(100, "work", unit="items", stream=out, min_interval_s=3600)
    p.update(10)  # first update prints (never printed before)
    p.update(10)  # throttled
    p.update(90)  # passes the total: prints once
    p.update(5)  # past the total: throttled again
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("work: 10/100 items (10%)") and "items/s" in lines[0]
    assert "110/100" in lines[1] and "ETA 00:00:00" in lines[1]
