from heartbeat.dags import ssh_heartbeat  # the Airflow DAG of airflow-ssh-heartbeat (see heartbeat/dags.py)

dag = ssh_heartbeat()

if __name__ == "__main__":  # `python dags/ssh_heartbeat.py`: one run in this process (dag.test())
    dag.test()
