-- The floor: the same parse, transform and load as salesflow, with no validation, reconciliation
-- or orchestration. The braced placeholders (the files, the ticket bands, the mart's SELECT) are
-- filled in by benchmarks/floor.py, so the bands and the SELECT come from salesflow itself.
CREATE TABLE sales AS
SELECT order_id,
       order_ts,
       CAST(order_ts AS DATE) AS order_date,
       customer_id,
       sku,
       product,
       category,
       quantity,
       unit_price,
       CAST(quantity * unit_price AS DECIMAL(18, 4)) AS total,
       CASE
           WHEN quantity * unit_price < 0 THEN 'return'
           WHEN quantity * unit_price <= {low_max} THEN 'low'
           WHEN quantity * unit_price <= {medium_max} THEN 'medium'
           WHEN quantity * unit_price <= {high_max} THEN 'high'
           ELSE 'very_high'
       END AS ticket_size,
       strftime(order_ts, '%Y-%m') AS month,
       strftime(order_ts, '%A') AS weekday,
       region,
       parse_filename(filename) AS batch_id,
       row_number() OVER (PARTITION BY filename) AS source_row
FROM read_csv(
    {sources},
    header = true,
    filename = true,
    columns = {{
        'order_id': 'VARCHAR', 'order_ts': 'TIMESTAMP', 'customer_id': 'VARCHAR',
        'sku': 'VARCHAR', 'product': 'VARCHAR', 'category': 'VARCHAR',
        'quantity': 'BIGINT', 'unit_price': 'DECIMAL(18, 4)', 'region': 'VARCHAR'
    }}
);

CREATE TABLE daily_sales AS
{daily_sales_select}
GROUP BY order_date, region, category;
