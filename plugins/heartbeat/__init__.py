"""airflow-ssh-heartbeat: agentless SSH heartbeat monitoring of a server fleet.

One module per concept: ``models`` (records), ``config`` (settings), ``inventory``
(validation and sharding), ``hostkeys`` (host key policy), ``probe`` (the SSH login),
``status`` (the status rules), ``store`` (PostgreSQL), ``cycle`` (one monitoring cycle),
``airflow_tasks`` (the thin Airflow adapters the DAG wires) and ``cli`` (the ``heartbeat``
command).
"""
