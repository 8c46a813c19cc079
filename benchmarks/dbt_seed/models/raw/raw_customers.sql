select * from read_csv('{{ env_var("DBT_SEED_DATA_DIR") }}/raw_customers.csv')
