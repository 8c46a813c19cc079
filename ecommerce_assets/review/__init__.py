"""What a change does before it reaches production: the models' unit tests, the plan, the slim
build's deferral and the table diff. No Dagster here: the CLI calls these."""
