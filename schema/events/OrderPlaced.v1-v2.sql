json_set(data, '$.currency', 'EUR')
