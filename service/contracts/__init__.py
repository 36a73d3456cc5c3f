"""Ferry's contracts: the shapes that cross a process boundary or outlive one version.

The CloudEvent envelope (`envelope`), the typed requests (`requests`), the job's public view
(`job_view`: the data of a status event and what the API serves), the status events
(`status_events`) and the stored results of each job kind (`exports`, `imports`). Plain
models at the bottom of the layers: they import nothing of Ferry's but the foundation.
"""
