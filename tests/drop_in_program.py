"""A small, ordinary multiprocessing program in which only the import line
was changed (from `import multiprocessing`).  tests/test_drop_in.py runs it."""
import sys

import fastmp as multiprocessing


def produce(q, start, count):
    for i in range(start, start + count):
        q.put(("item", i))


def add(counter, lock, n):
    for _ in range(n):
        with lock:
            counter.value += 1


def square(x):
    return x * x


def echo_until_none(conn, results):
    while (message := conn.recv()) is not None:
        conn.send(message * 2)
    results.put("echo done")
    conn.close()


def main(method):
    multiprocessing.set_start_method(method)
    q = multiprocessing.Queue()
    producers = [multiprocessing.Process(target=produce, args=(q, k * 100, 100)) for k in range(3)]
    for p in producers:
        p.start()
    items = sorted(q.get(timeout=30)[1] for _ in range(300))
    for p in producers:
        p.join()
    assert items == list(range(300)), items

    counter, lock = multiprocessing.Value("i", 0), multiprocessing.Lock()
    adders = [multiprocessing.Process(target=add, args=(counter, lock, 200)) for _ in range(2)]
    for p in adders:
        p.start()
    for p in adders:
        p.join()
    assert counter.value == 400

    parent_end, child_end = multiprocessing.Pipe()
    results = multiprocessing.SimpleQueue()
    echo = multiprocessing.Process(target=echo_until_none, args=(child_end, results))
    echo.start()
    child_end.close()
    for word in ("a", "bc"):
        parent_end.send(word)
        assert parent_end.recv() == word * 2
    parent_end.send(None)
    assert results.get() == "echo done"
    try:
        parent_end.recv()
    except EOFError:
        pass
    else:
        raise AssertionError("expected EOFError once the child closed its end")
    echo.join()

    with multiprocessing.Pool(2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]

    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        shared["cpus"] = multiprocessing.cpu_count()
        assert shared["cpus"] >= 1
    assert multiprocessing.current_process().name == "MainProcess"
    print("ok", method)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main(sys.argv[1])
