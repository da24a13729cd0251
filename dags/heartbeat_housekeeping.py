from heartbeat.dags import heartbeat_housekeeping  # the Airflow DAG of airflow-ssh-heartbeat's retention

dag = heartbeat_housekeeping()

if __name__ == "__main__":  # `python dags/heartbeat_housekeeping.py`: one run in this process (dag.test())
    dag.test()
