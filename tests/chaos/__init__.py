"""The chaos suite (`make chaos`, marker `chaos`): faults under load against real `forkq
worker` processes, each scenario one test that prints one line of figures (harness.py says
what each figure counts and what bounds the duplicates).

A new scenario (a fault not yet tried) is a test marked `chaos` and `slow`
that starts its servers (private ones for any fault to a server), then:

    run = Run("my-fault", "redis", chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", "2", "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)              # under load
        run.fault(held_by_worker(2, None))        # what the fault can put back in flight
        ...                                       # the fault
        results.append(run.probe(client))         # recovery: the fault to this task's end
        drain(results, timeout=60)
        figures = run.figures(dead_count(client))
        figures.report()
        figures.check()                           # no loss, duplicates within the bound
"""
