import json

from arctui.supervisor.tail import EventTailer, batches


def line(seq, **fields):
    return (json.dumps({"seq": seq, "time": 1.0, "event": "step", "step": seq, **fields}) + "\n").encode()


def test_reads_only_complete_lines_and_resumes_from_offset(tmp_path):
    path = tmp_path / "events.jsonl"
    tailer = EventTailer(path)
    assert tailer.read() == []  # file not there yet
    full = line(1) + line(2)
    half = line(3)[:10]
    path.write_bytes(full + half)
    assert [e["seq"] for e in tailer.read()] == [1, 2]
    assert tailer.offset == len(full)
    assert tailer.read() == []
    with open(path, "ab") as fh:
        fh.write(line(3)[10:] + line(4))
    assert [e["seq"] for e in tailer.read()] == [3, 4]


def test_skips_malformed_lines_and_counts_them(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"not json\n" + b"[1, 2]\n" + b'{"seq": "x"}\n' + b"\n" + line(2))
    tailer = EventTailer(path)
    assert [e["seq"] for e in tailer.read()] == [1, 2]
    assert tailer.bad_lines == 3


def test_truncated_file_starts_over(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2) + line(3))
    tailer = EventTailer(path)
    assert len(tailer.read()) == 3
    path.write_bytes(line(1))
    assert [e["seq"] for e in tailer.read()] == [1]


def test_read_all_crosses_the_chunk_limit(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(i, pad="x" * 100) for i in range(1, 201)))
    tailer = EventTailer(path)
    first = tailer.read(max_bytes=1000)
    assert 0 < len(first) < 200
    rest = tailer.read_all()
    assert [e["seq"] for e in first + rest] == list(range(1, 201))


def test_batches():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([], 3) == []
